"""The bot's handler groups, one router each: ``start`` (/start, /help, unknown
commands), ``channels`` (/add_channel, /remove_channel, /my_channels and their buttons),
``status`` (/status for admins)."""
