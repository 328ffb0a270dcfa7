-- notification_queues.first_step (004) is no longer read: the "started" notice follows the
-- queue's first step start whichever step it is (compress and audio-convert start side by side).
-- Applied at every start like the files before it; the view runs a DROP COLUMN IF EXISTS only
-- while the column is there (projections/views.py), on SQLite as on Postgres. Stop processes of
-- an older vidpipe (they still write the column) before starting this one on the same database.

ALTER TABLE notification_queues DROP COLUMN IF EXISTS first_step;
