"""What several hubs of one validator share, through Redis (issue 13).

Nothing here is imported by a hub without ``--backplane``: ``redis`` is an optional
dependency (``pip install 'bettensor-ws[ha]'``), loaded lazily by
:func:`~server_stub.backplane.redis_link.open_redis`.

- :mod:`.nonces`: btauth/1 replay protection across hubs (a nonce used at one hub is
  refused at every other).
- :mod:`.presence`: one connection per hotkey across hubs (a newer connection on one
  hub closes the older one on another with 4001).
"""
