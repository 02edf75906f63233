"""The Photo tab: its builder and handlers (``tab``) and the compare-every-checkpoint panel."""
