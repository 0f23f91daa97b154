"""Requests to URLs that users supply (webhooks), behind the SSRF guard.

``addresses`` says which IP addresses may be reached, ``guard`` applies it to URLs and host
lookups, ``client`` is the one HTTP session that connects only to what the guard allowed.
"""
