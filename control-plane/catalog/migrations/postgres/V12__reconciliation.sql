-- V12: the deployment's identity and the reconciler's reports.
--
-- instance holds one row: the id every database and role this deployment
-- creates names in its marker (engine/src/marker.rs). The reconciler reports
-- and repairs only objects whose marker names this id, so two deployments
-- sharing a database server never touch each other's objects.
CREATE TABLE instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO instance (id) VALUES (gen_random_uuid());

-- One row per reconciliation pass (the newest few are kept): what it compared
-- and found, as the API returns it.
CREATE TABLE reconciliation_reports (
    id          uuid PRIMARY KEY,
    node        text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    report      jsonb NOT NULL
);
CREATE INDEX reconciliation_reports_newest ON reconciliation_reports (finished_at DESC);
