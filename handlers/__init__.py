"""QStash step webhooks turned into commands, and the providers that do each step's work."""
