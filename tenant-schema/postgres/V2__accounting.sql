-- V2: example business schema of a small accounting product.
--
-- Every business table lives in app, is changed only through the SECURITY
-- DEFINER functions in procedures/postgres, and keeps its previous versions
-- in history.<table>_history. valid_from is the last column of each app
-- table so that a history row is exactly "old row, valid_to, operation".

-------------------------------------------------------------------------------
-- Business tables
-------------------------------------------------------------------------------

CREATE TABLE app.customers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (name <> ''),
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    valid_from timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.accounting_periods (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    starts_on  date NOT NULL,
    ends_on    date NOT NULL,
    closed_at  timestamptz,
    valid_from timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);

CREATE TABLE app.invoices (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES app.customers,
    period_id   uuid NOT NULL REFERENCES app.accounting_periods,
    number      text NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'posted')),
    issued_on   date NOT NULL,
    total       numeric(14,2) NOT NULL DEFAULT 0,
    valid_from  timestamptz NOT NULL DEFAULT now()
);

-- Foreign keys are not indexed automatically; these keep lookups by customer
-- or period, and the referential checks on their deletion, cheap.
CREATE INDEX invoices_customer_id_idx ON app.invoices (customer_id);
CREATE INDEX invoices_period_id_idx ON app.invoices (period_id);

CREATE TABLE app.invoice_lines (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_id  uuid NOT NULL REFERENCES app.invoices,
    line_no     int NOT NULL,
    description text NOT NULL,
    quantity    numeric(14,4) NOT NULL CHECK (quantity > 0),
    unit_price  numeric(14,2) NOT NULL,
    amount      numeric(14,2) NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, line_no)
);

-------------------------------------------------------------------------------
-- History tables: the app columns (copied with LIKE, so without defaults,
-- checks or keys: an id appears once per version) plus valid_to and
-- operation ('U' or 'D') last, matching platform.keep_history.
-------------------------------------------------------------------------------

CREATE TABLE history.customers_history (
    LIKE app.customers,
    valid_to  timestamptz NOT NULL,
    operation char(1) NOT NULL
);
CREATE INDEX customers_history_id_idx ON history.customers_history (id);

CREATE TABLE history.accounting_periods_history (
    LIKE app.accounting_periods,
    valid_to  timestamptz NOT NULL,
    operation char(1) NOT NULL
);
CREATE INDEX accounting_periods_history_id_idx ON history.accounting_periods_history (id);

CREATE TABLE history.invoices_history (
    LIKE app.invoices,
    valid_to  timestamptz NOT NULL,
    operation char(1) NOT NULL
);
CREATE INDEX invoices_history_id_idx ON history.invoices_history (id);

CREATE TABLE history.invoice_lines_history (
    LIKE app.invoice_lines,
    valid_to  timestamptz NOT NULL,
    operation char(1) NOT NULL
);
CREATE INDEX invoice_lines_history_id_idx ON history.invoice_lines_history (id);

-------------------------------------------------------------------------------
-- Triggers. Trigger names start with the table name so they sort (and
-- therefore fire) predictably; stamp_valid_from is BEFORE and keep_history
-- AFTER, so the history row receives the old valid_from.
-------------------------------------------------------------------------------

CREATE TRIGGER customers_stamp_valid_from BEFORE UPDATE ON app.customers
    FOR EACH ROW EXECUTE FUNCTION platform.stamp_valid_from();
CREATE TRIGGER customers_keep_history AFTER UPDATE OR DELETE ON app.customers
    FOR EACH ROW EXECUTE FUNCTION platform.keep_history();
CREATE TRIGGER customers_refuse_truncate BEFORE TRUNCATE ON app.customers
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_truncate();
CREATE TRIGGER customers_history_append_only BEFORE UPDATE OR DELETE ON history.customers_history
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_history_change();
CREATE TRIGGER customers_history_no_truncate BEFORE TRUNCATE ON history.customers_history
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_history_change();

CREATE TRIGGER accounting_periods_stamp_valid_from BEFORE UPDATE ON app.accounting_periods
    FOR EACH ROW EXECUTE FUNCTION platform.stamp_valid_from();
CREATE TRIGGER accounting_periods_keep_history AFTER UPDATE OR DELETE ON app.accounting_periods
    FOR EACH ROW EXECUTE FUNCTION platform.keep_history();
CREATE TRIGGER accounting_periods_refuse_truncate BEFORE TRUNCATE ON app.accounting_periods
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_truncate();
CREATE TRIGGER accounting_periods_history_append_only BEFORE UPDATE OR DELETE ON history.accounting_periods_history
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_history_change();
CREATE TRIGGER accounting_periods_history_no_truncate BEFORE TRUNCATE ON history.accounting_periods_history
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_history_change();

CREATE TRIGGER invoices_stamp_valid_from BEFORE UPDATE ON app.invoices
    FOR EACH ROW EXECUTE FUNCTION platform.stamp_valid_from();
CREATE TRIGGER invoices_keep_history AFTER UPDATE OR DELETE ON app.invoices
    FOR EACH ROW EXECUTE FUNCTION platform.keep_history();
CREATE TRIGGER invoices_refuse_truncate BEFORE TRUNCATE ON app.invoices
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_truncate();
CREATE TRIGGER invoices_history_append_only BEFORE UPDATE OR DELETE ON history.invoices_history
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_history_change();
CREATE TRIGGER invoices_history_no_truncate BEFORE TRUNCATE ON history.invoices_history
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_history_change();

CREATE TRIGGER invoice_lines_stamp_valid_from BEFORE UPDATE ON app.invoice_lines
    FOR EACH ROW EXECUTE FUNCTION platform.stamp_valid_from();
CREATE TRIGGER invoice_lines_keep_history AFTER UPDATE OR DELETE ON app.invoice_lines
    FOR EACH ROW EXECUTE FUNCTION platform.keep_history();
CREATE TRIGGER invoice_lines_refuse_truncate BEFORE TRUNCATE ON app.invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_truncate();
CREATE TRIGGER invoice_lines_history_append_only BEFORE UPDATE OR DELETE ON history.invoice_lines_history
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_history_change();
CREATE TRIGGER invoice_lines_history_no_truncate BEFORE TRUNCATE ON history.invoice_lines_history
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_history_change();
