"""The Telegram side of the bot: the PTB application, handlers, delivery, ingest, keyboards, texts, i18n."""
