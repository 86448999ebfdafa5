"""The storage side: the database, Redis (queue and transient keys), pseudonyms and disk hygiene."""
