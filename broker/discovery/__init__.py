"""Discovery fan-out (DESIGN 6): ImagingStudy and DocumentReference searches asked of the patient's gateways.

- ``controller``: the two search routes (HTTP only); ``resources``: the searchset Bundle they answer;
- ``service``: locating, membership, credentials, bounds, breakers, single flight, kept results;
- ``query``: one consumer search, checked; ``locator``: where a patient's imaging is (a Protocol);
- ``gateways``: asking one gateway; ``merge``: the merged result (pure);
- ``breaker``, ``singleflight``, ``pages``, ``dates``: in-process parts;
- ``plugin``: how the feature joins the server.
"""
