"""The bot's use cases, free of Telegram types: handlers call these, these call storage."""
