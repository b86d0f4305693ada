"""The Attention page's tabs: each module draws one or two tabs from an AttentionView."""
