"""The Inside the model page's tabs: each module draws one tab from an InsideView."""
