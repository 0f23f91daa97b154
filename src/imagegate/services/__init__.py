"""Use cases. Every front end (API, CLI, web, bot) calls these and nothing below them."""
