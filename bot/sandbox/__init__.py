"""The sandbox: Linli against a local stand-in for Telegram, played from a web page.

`python main.py --sandbox` (or `make run` with no BOT_TOKEN) starts one aiohttp server on
127.0.0.1 that is both a Bot API server for the bot (the same adapters, over HTTP) and a chat
page where a visitor acts as the people of a ready community. Nothing here is used by the bot
when it runs against Telegram.
"""
