-- V9: example business schema of a small accounting product (T-SQL
-- counterpart of tenant-schema/postgres/V2__accounting.sql).
--
-- Every business table lives in app, is changed only through the procedures
-- in procedures/sqlserver (reached by app_rw through ownership chaining),
-- and is a SYSTEM-VERSIONED temporal table whose previous versions SQL
-- Server itself writes to an explicit, pre-created history.<Table>History.
-- This replaces the PostgreSQL stamp_valid_from / keep_history triggers:
--   * ValidFrom / ValidTo are UTC and set by the engine to the BEGIN time of
--     the modifying transaction (all rows changed in one transaction share
--     it); they are HIDDEN, so SELECT * does not return them.
--   * There is no "operation" column: a deleted row is a history row whose
--     Id has no current row (and no later history version).
--   * While SYSTEM_VERSIONING is ON, the history tables cannot be written or
--     truncated by anybody, and TRUNCATE TABLE on the app tables is refused,
--     which replaces the refuse_history_change / refuse_truncate triggers.
--     Turning versioning off needs ALTER on the table, which no role has.
--
-- Each history table must match its current table in column count, names,
-- order, types and nullability, and may have no constraints (no keys, no
-- defaults, no checks); ValidFrom / ValidTo are plain datetime2(6) NOT NULL
-- there. The clustered index on (ValidTo, ValidFrom) is the layout SQL
-- Server uses for history tables it creates itself; the Id index serves
-- "versions of one row" lookups.
--
-- Ids are uniqueidentifier with DEFAULT NEWSEQUENTIALID() (ever increasing
-- on one server, so the clustered primary keys do not fragment); callers
-- that choose their own id (CustomerUpsert) may pass any GUID.
-- Timestamps (CreatedAt, ClosedAt) are UTC datetime2(6).

-------------------------------------------------------------------------------
-- History tables first, so SYSTEM_VERSIONING can bind to them.
-------------------------------------------------------------------------------

CREATE TABLE history.CustomersHistory (
    Id        uniqueidentifier NOT NULL,
    Name      nvarchar(200)    NOT NULL,
    Email     nvarchar(320)    NULL,
    CreatedAt datetime2(6)     NOT NULL,
    ValidFrom datetime2(6)     NOT NULL,
    ValidTo   datetime2(6)     NOT NULL
);
CREATE CLUSTERED INDEX IX_CustomersHistory_Period ON history.CustomersHistory (ValidTo, ValidFrom);
CREATE INDEX IX_CustomersHistory_Id ON history.CustomersHistory (Id, ValidFrom);

CREATE TABLE history.AccountingPeriodsHistory (
    Id        uniqueidentifier NOT NULL,
    StartsOn  date             NOT NULL,
    EndsOn    date             NOT NULL,
    ClosedAt  datetime2(6)     NULL,
    ValidFrom datetime2(6)     NOT NULL,
    ValidTo   datetime2(6)     NOT NULL
);
CREATE CLUSTERED INDEX IX_AccountingPeriodsHistory_Period ON history.AccountingPeriodsHistory (ValidTo, ValidFrom);
CREATE INDEX IX_AccountingPeriodsHistory_Id ON history.AccountingPeriodsHistory (Id, ValidFrom);

CREATE TABLE history.InvoicesHistory (
    Id         uniqueidentifier NOT NULL,
    CustomerId uniqueidentifier NOT NULL,
    PeriodId   uniqueidentifier NOT NULL,
    Number     nvarchar(100)    NOT NULL,
    Status     nvarchar(10)     NOT NULL,
    IssuedOn   date             NOT NULL,
    Total      decimal(14, 2)   NOT NULL,
    ValidFrom  datetime2(6)     NOT NULL,
    ValidTo    datetime2(6)     NOT NULL
);
CREATE CLUSTERED INDEX IX_InvoicesHistory_Period ON history.InvoicesHistory (ValidTo, ValidFrom);
CREATE INDEX IX_InvoicesHistory_Id ON history.InvoicesHistory (Id, ValidFrom);

CREATE TABLE history.InvoiceLinesHistory (
    Id          uniqueidentifier NOT NULL,
    InvoiceId   uniqueidentifier NOT NULL,
    [LineNo]    int              NOT NULL,
    Description nvarchar(2000)   NOT NULL,
    Quantity    decimal(14, 4)   NOT NULL,
    UnitPrice   decimal(14, 2)   NOT NULL,
    Amount      decimal(14, 2)   NOT NULL,
    ValidFrom   datetime2(6)     NOT NULL,
    ValidTo     datetime2(6)     NOT NULL
);
CREATE CLUSTERED INDEX IX_InvoiceLinesHistory_Period ON history.InvoiceLinesHistory (ValidTo, ValidFrom);
CREATE INDEX IX_InvoiceLinesHistory_Id ON history.InvoiceLinesHistory (Id, ValidFrom);

-------------------------------------------------------------------------------
-- Business tables
-------------------------------------------------------------------------------

CREATE TABLE app.Customers (
    Id        uniqueidentifier NOT NULL
              CONSTRAINT DF_Customers_Id DEFAULT (NEWSEQUENTIALID())
              CONSTRAINT PK_Customers PRIMARY KEY CLUSTERED,
    Name      nvarchar(200)    NOT NULL
              CONSTRAINT CK_Customers_Name CHECK (Name <> N''),
    Email     nvarchar(320)    NULL,
    CreatedAt datetime2(6)     NOT NULL
              CONSTRAINT DF_Customers_CreatedAt DEFAULT (SYSUTCDATETIME()),
    ValidFrom datetime2(6) GENERATED ALWAYS AS ROW START HIDDEN NOT NULL,
    ValidTo   datetime2(6) GENERATED ALWAYS AS ROW END HIDDEN NOT NULL,
    PERIOD FOR SYSTEM_TIME (ValidFrom, ValidTo)
)
WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.CustomersHistory, DATA_CONSISTENCY_CHECK = ON));

CREATE TABLE app.AccountingPeriods (
    Id        uniqueidentifier NOT NULL
              CONSTRAINT DF_AccountingPeriods_Id DEFAULT (NEWSEQUENTIALID())
              CONSTRAINT PK_AccountingPeriods PRIMARY KEY CLUSTERED,
    StartsOn  date             NOT NULL,
    EndsOn    date             NOT NULL,
    ClosedAt  datetime2(6)     NULL,
    ValidFrom datetime2(6) GENERATED ALWAYS AS ROW START HIDDEN NOT NULL,
    ValidTo   datetime2(6) GENERATED ALWAYS AS ROW END HIDDEN NOT NULL,
    PERIOD FOR SYSTEM_TIME (ValidFrom, ValidTo),
    CONSTRAINT CK_AccountingPeriods_Dates CHECK (EndsOn >= StartsOn)
)
WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.AccountingPeriodsHistory, DATA_CONSISTENCY_CHECK = ON));

CREATE TABLE app.Invoices (
    Id         uniqueidentifier NOT NULL
               CONSTRAINT DF_Invoices_Id DEFAULT (NEWSEQUENTIALID())
               CONSTRAINT PK_Invoices PRIMARY KEY CLUSTERED,
    CustomerId uniqueidentifier NOT NULL
               CONSTRAINT FK_Invoices_Customers REFERENCES app.Customers (Id),
    PeriodId   uniqueidentifier NOT NULL
               CONSTRAINT FK_Invoices_AccountingPeriods REFERENCES app.AccountingPeriods (Id),
    Number     nvarchar(100)    NOT NULL
               CONSTRAINT UQ_Invoices_Number UNIQUE,
    Status     nvarchar(10)     NOT NULL
               CONSTRAINT DF_Invoices_Status DEFAULT (N'draft')
               CONSTRAINT CK_Invoices_Status CHECK (Status IN (N'draft', N'posted')),
    IssuedOn   date             NOT NULL,
    Total      decimal(14, 2)   NOT NULL
               CONSTRAINT DF_Invoices_Total DEFAULT (0),
    ValidFrom  datetime2(6) GENERATED ALWAYS AS ROW START HIDDEN NOT NULL,
    ValidTo    datetime2(6) GENERATED ALWAYS AS ROW END HIDDEN NOT NULL,
    PERIOD FOR SYSTEM_TIME (ValidFrom, ValidTo)
)
WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.InvoicesHistory, DATA_CONSISTENCY_CHECK = ON));

-- Foreign keys are not indexed automatically; these keep lookups by
-- customer or period, and the referential checks, cheap.
CREATE INDEX IX_Invoices_CustomerId ON app.Invoices (CustomerId);
CREATE INDEX IX_Invoices_PeriodId ON app.Invoices (PeriodId);

CREATE TABLE app.InvoiceLines (
    Id          uniqueidentifier NOT NULL
                CONSTRAINT DF_InvoiceLines_Id DEFAULT (NEWSEQUENTIALID())
                CONSTRAINT PK_InvoiceLines PRIMARY KEY CLUSTERED,
    InvoiceId   uniqueidentifier NOT NULL
                CONSTRAINT FK_InvoiceLines_Invoices REFERENCES app.Invoices (Id),
    [LineNo]    int              NOT NULL,
    Description nvarchar(2000)   NOT NULL,
    Quantity    decimal(14, 4)   NOT NULL
                CONSTRAINT CK_InvoiceLines_Quantity CHECK (Quantity > 0),
    UnitPrice   decimal(14, 2)   NOT NULL,
    Amount      decimal(14, 2)   NOT NULL,
    ValidFrom   datetime2(6) GENERATED ALWAYS AS ROW START HIDDEN NOT NULL,
    ValidTo     datetime2(6) GENERATED ALWAYS AS ROW END HIDDEN NOT NULL,
    PERIOD FOR SYSTEM_TIME (ValidFrom, ValidTo),
    CONSTRAINT UQ_InvoiceLines_InvoiceId_LineNo UNIQUE (InvoiceId, [LineNo])
)
WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.InvoiceLinesHistory, DATA_CONSISTENCY_CHECK = ON));
