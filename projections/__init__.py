"""The read side: projections of the event log into the tables the frontend reads."""
