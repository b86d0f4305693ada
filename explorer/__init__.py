"""The UI layer the pages share: chart builders, token views, model and tokenizer discovery."""
