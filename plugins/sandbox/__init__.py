"""Demo and test plugins: a payment provider with a fake checkout page that
sends real signed webhooks, and a delivery backend that credits a local ledger."""
