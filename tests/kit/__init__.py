"""Test kit: the helpers the test modules share (fixtures stay in ``conftest.py``).

One module per idea: ``keys`` (who signs), ``games`` (what is on offer), ``hubkit`` (a hub
served on loopback), ``wire`` (raw frames over aiohttp), ``waiting`` (bounded waits),
``clientkit`` (watching a ValidatorConnection), ``faultproxy`` (a TCP proxy that injects
faults) and ``hostile`` (raw-socket clients for the security tests).
"""
