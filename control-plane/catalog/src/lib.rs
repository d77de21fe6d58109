//! The catalog: the control plane's own database.
//!
//! It stores which tenants exist and in what state, every operation with its steps (the durable
//! workflow log, written before each side effect), and an append-only, hash-chained audit log of
//! every state change. Only this crate reads or writes catalog tables. Every method that changes
//! a tenant's or an operation's state appends its audit row in the same transaction, so the log
//! cannot miss a change that happened.

mod error;
mod model;
mod store;

pub use error::CatalogError;
pub use model::{
    AuditRecord, ChainVerification, NewOperation, NewTenant, OperationDirection, OperationRecord,
    StepRecord, TenantRecord,
};
pub use store::{Catalog, Lease, TenantTransition};
