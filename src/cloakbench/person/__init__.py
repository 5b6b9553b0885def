"""For one person: cloak a folder of photos at full resolution (``cloak_photos``) and audit how
well the cloaked photos protect that person against pretrained recognisers (``audit``).

Both are command-line tools (``cloakbench cloak``, ``cloakbench audit``); ``common`` holds what
they share (reading the configuration, the photo listing, the face intake).
"""
