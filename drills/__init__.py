"""Fault-injection drills for freshtoken: ``python -m drills <name>`` (see README.md).

The CI-sized versions of crash, db_outage, redis_outage and lost_response run
from tests/drills/; ``soak`` and the long versions run only from here.
"""
