"""FHIR R4 facade (DESIGN 4.2). ``router.py`` wires it: ``FHIR_RESOURCES`` and ``fhir_router(settings)``.

Nothing is imported here, so that importing a module of this package (``search``, ``io``…) never
pulls in the whole facade and the broker's controllers with it (that would make an import cycle).
"""
