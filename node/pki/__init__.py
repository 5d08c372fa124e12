"""The cluster's certificate authority and each node's TLS material.

`authority` makes and checks certificates (pure: bytes and times in, bytes out), `store`
keeps a node's certificate, key and trusted CAs in its data dir, and `contexts` turns those
into the SSL contexts of the API server and of the calls between nodes.
"""
