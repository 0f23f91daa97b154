"""The HTTP front end: OpenAI-compatible image routes plus imagegate's own."""
