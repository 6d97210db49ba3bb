-- E-mail delivery of scheduled reports (issue 9): how a run's e-mail ended. NULL when the schedule
-- has no email_to; otherwise pending, sent, failed (delivery_error says why) or skipped (the
-- report itself failed).
ALTER TABLE report_runs ADD COLUMN delivery TEXT;
ALTER TABLE report_runs ADD COLUMN delivery_error TEXT;

-- Collectors sharing one database run each scheduled slot once: the first to insert
-- (schedule, slot) runs it, the others skip it.
CREATE TABLE report_slots (
    schedule        TEXT NOT NULL,
    slot_ms         BIGINT NOT NULL,
    claimed_by      TEXT NOT NULL,
    claimed_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (schedule, slot_ms)
);
