//! The double's vault: its operations on the locked state, and Key Vault's error answers.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{random_hex, Entry, Inner, Shared, Version};

pub(super) type Answer = (StatusCode, Value);

pub(super) fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Answer {
    let mut e = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        e["innererror"] = json!({ "code": inner });
    }
    (status, json!({ "error": e }))
}

pub(super) fn secret_not_found(name: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently \
             deleted this secret you may be able to recover it using the correct recovery \
             command. For help resolving this issue, please see \
             https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

pub(super) fn deleted_not_found() -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        "Deleted Secret not found",
        None,
    )
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The vault's operations on the locked state.
pub(super) struct Vault<'a> {
    pub(super) shared: &'a Shared,
    pub(super) inner: &'a mut Inner,
    pub(super) query: &'a HashMap<String, String>,
}

impl Vault<'_> {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.inner.clock_offset
    }

    /// The time of a write: the clock moves on first when `seconds_per_write` says so.
    fn tick(&mut self) -> i64 {
        self.inner.clock_offset += self.shared.options.seconds_per_write;
        self.now()
    }

    fn recovery_level(&self) -> &'static str {
        let customized = self.shared.options.retention_days < 90;
        match (self.inner.purge_protection, customized) {
            (true, false) => "Recoverable",
            (true, true) => "CustomizedRecoverable",
            (false, false) => "Recoverable+Purgeable",
            (false, true) => "CustomizedRecoverable+Purgeable",
        }
    }

    fn attributes(&self, v: &Version) -> Value {
        let mut a = json!({
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": self.recovery_level(),
            "recoverableDays": self.shared.options.retention_days,
        });
        if let Some(exp) = v.exp {
            a["exp"] = exp.into();
        }
        if let Some(nbf) = v.nbf {
            a["nbf"] = nbf.into();
        }
        a
    }

    /// A secret bundle (`with_value` for get and set only) or list item.
    fn bundle(&self, name: &str, v: &Version, with_value: bool, versioned_id: bool) -> Value {
        let base = &self.shared.base;
        let id = if versioned_id {
            format!("{base}secrets/{name}/{}", v.id)
        } else {
            format!("{base}secrets/{name}")
        };
        let mut b = json!({ "id": id, "attributes": self.attributes(v) });
        if with_value {
            b["value"] = v.value.clone().into();
        }
        if let Some(ct) = &v.content_type {
            b["contentType"] = ct.clone().into();
        }
        if let Some(tags) = &v.tags {
            b["tags"] = Value::Object(tags.clone());
        }
        b
    }

    fn deleted_bundle(&self, e: &Entry) -> Value {
        let (deleted, purge) = e.deleted.unwrap_or_default();
        let mut b = match e.versions.last() {
            Some(v) => self.bundle(&e.name, v, false, true),
            None => json!({}),
        };
        b["recoveryId"] = format!("{}deletedsecrets/{}", self.shared.base, e.name).into();
        b["deletedDate"] = deleted.into();
        b["scheduledPurgeDate"] = purge.into();
        b
    }

    fn live(&self, name: &str) -> Option<&Entry> {
        self.inner
            .secrets
            .get(&name.to_ascii_lowercase())
            .filter(|e| e.deleted.is_none())
    }

    /// A page of `items` and the link to the next one.
    fn page(&self, items: Vec<Value>, path: &str) -> Answer {
        let size = self
            .query
            .get("maxresults")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(self.shared.options.page_size)
            .clamp(1, self.shared.options.page_size.max(1));
        let skip = self
            .query
            .get("$skiptoken")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let page: Vec<Value> = items.iter().skip(skip).take(size).cloned().collect();
        let next = if skip + size < items.len() {
            Value::from(format!(
                "{}{path}?api-version=2025-07-01&$skiptoken={}&maxresults={size}",
                self.shared.base,
                skip + size
            ))
        } else {
            Value::Null
        };
        (StatusCode::OK, json!({ "value": page, "nextLink": next }))
    }

    pub(super) fn list_names(&self) -> Answer {
        let items = self
            .inner
            .secrets
            .values()
            .filter(|e| e.deleted.is_none())
            .filter_map(|e| {
                e.versions
                    .last()
                    .map(|v| self.bundle(&e.name, v, false, false))
            })
            .collect();
        self.page(items, "secrets")
    }

    pub(super) fn list_deleted(&self) -> Answer {
        let items = self
            .inner
            .secrets
            .values()
            .filter(|e| e.deleted.is_some() && e.settling == 0)
            .map(|e| self.deleted_bundle(e))
            .collect();
        self.page(items, "deletedsecrets")
    }

    pub(super) fn list_versions(&self, name: &str) -> Answer {
        // Key Vault answers an empty list for a name it does not have.
        let items = match self.live(name) {
            Some(e) => {
                // Versions come back in no particular order (by id here), as in Key Vault.
                let mut vs: Vec<&Version> = e.versions.iter().collect();
                vs.sort_by(|a, b| a.id.cmp(&b.id));
                vs.into_iter()
                    .map(|v| self.bundle(&e.name, v, false, true))
                    .collect()
            }
            None => Vec::new(),
        };
        self.page(items, &format!("secrets/{name}/versions"))
    }

    pub(super) fn set(&mut self, name: &str, body: &Value) -> Answer {
        let Some(value) = body.get("value").and_then(Value::as_str) else {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "Property value is required.",
                None,
            );
        };
        let key = name.to_ascii_lowercase();
        if self
            .inner
            .secrets
            .get(&key)
            .is_some_and(|e| e.deleted.is_some())
        {
            return error(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Secret {name} is currently in a deleted but recoverable state, and its name \
                     cannot be reused; in this state, the secret can only be recovered or purged."
                ),
                Some("ObjectIsDeletedButRecoverable"),
            );
        }
        let now = self.tick();
        let attributes = body.get("attributes");
        let version = Version {
            id: random_hex(),
            value: value.to_owned(),
            content_type: body
                .get("contentType")
                .and_then(Value::as_str)
                .map(str::to_owned),
            tags: body.get("tags").and_then(Value::as_object).cloned(),
            enabled: attributes
                .and_then(|a| a.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(true),
            exp: attributes
                .and_then(|a| a.get("exp"))
                .and_then(Value::as_i64),
            nbf: attributes
                .and_then(|a| a.get("nbf"))
                .and_then(Value::as_i64),
            created: now,
            updated: now,
        };
        let entry = self.inner.secrets.entry(key).or_insert_with(|| Entry {
            name: name.to_owned(),
            versions: Vec::new(),
            deleted: None,
            settling: 0,
        });
        entry.versions.push(version.clone());
        let stored_name = entry.name.clone();
        (
            StatusCode::OK,
            self.bundle(&stored_name, &version, true, true),
        )
    }

    pub(super) fn get(&mut self, name: &str, version: Option<&str>) -> Answer {
        let key = name.to_ascii_lowercase();
        match self.inner.secrets.get_mut(&key) {
            // A recovery still settling: not readable yet.
            Some(e) if e.deleted.is_none() && e.settling > 0 => {
                e.settling -= 1;
                return secret_not_found(name);
            }
            _ => {}
        }
        let Some(e) = self.live(name) else {
            return secret_not_found(name);
        };
        let v = match version {
            None => e.versions.last(),
            Some(id) => e.versions.iter().find(|v| v.id == id),
        };
        let Some(v) = v else {
            return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
        };
        if !v.enabled {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                Some("SecretDisabled"),
            );
        }
        (StatusCode::OK, self.bundle(&e.name, v, true, true))
    }

    pub(super) fn update(&mut self, name: &str, version: Option<&str>, body: &Value) -> Answer {
        let now = self.tick();
        let key = name.to_ascii_lowercase();
        let Some(e) = self
            .inner
            .secrets
            .get_mut(&key)
            .filter(|e| e.deleted.is_none())
        else {
            return secret_not_found(name);
        };
        let stored_name = e.name.clone();
        let v = match version {
            None => e.versions.last_mut(),
            Some(id) => e.versions.iter_mut().find(|v| v.id == id),
        };
        let Some(v) = v else {
            return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
        };
        if let Some(a) = body.get("attributes").and_then(Value::as_object) {
            if let Some(enabled) = a.get("enabled").and_then(Value::as_bool) {
                v.enabled = enabled;
            }
            // An explicit null clears the date; an absent key leaves it.
            if let Some(exp) = a.get("exp") {
                v.exp = exp.as_i64();
            }
            if let Some(nbf) = a.get("nbf") {
                v.nbf = nbf.as_i64();
            }
        }
        if let Some(tags) = body.get("tags") {
            v.tags = tags.as_object().cloned();
        }
        if let Some(ct) = body.get("contentType") {
            v.content_type = ct.as_str().map(str::to_owned);
        }
        v.updated = now;
        let v = v.clone();
        (StatusCode::OK, self.bundle(&stored_name, &v, false, true))
    }

    pub(super) fn delete(&mut self, name: &str) -> Answer {
        let now = self.tick();
        let retention = self.shared.options.retention_days * 86_400;
        let lag = self.shared.options.settle_lag;
        let key = name.to_ascii_lowercase();
        let Some(e) = self
            .inner
            .secrets
            .get_mut(&key)
            .filter(|e| e.deleted.is_none())
        else {
            return secret_not_found(name);
        };
        e.deleted = Some((now, now + retention));
        e.settling = lag;
        let e = &self.inner.secrets[&key];
        (StatusCode::OK, self.deleted_bundle(e))
    }

    /// The soft-deleted entry, once its deletion has settled.
    fn settled_deleted(&mut self, name: &str) -> Result<String, Answer> {
        let key = name.to_ascii_lowercase();
        match self.inner.secrets.get_mut(&key) {
            Some(e) if e.deleted.is_some() && e.settling > 0 => {
                e.settling -= 1;
                Err(error(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!("Secret {name} is currently being deleted."),
                    Some("ObjectIsBeingDeleted"),
                ))
            }
            Some(e) if e.deleted.is_some() => Ok(key),
            _ => Err(deleted_not_found()),
        }
    }

    pub(super) fn get_deleted(&mut self, name: &str) -> Answer {
        match self.settled_deleted(name) {
            Ok(key) => (
                StatusCode::OK,
                self.deleted_bundle(&self.inner.secrets[&key]),
            ),
            // While the deletion settles a read answers 404, not 409.
            Err((status, _)) if status == StatusCode::CONFLICT => deleted_not_found(),
            Err(answer) => answer,
        }
    }

    pub(super) fn purge(&mut self, name: &str) -> Answer {
        let key = match self.settled_deleted(name) {
            Ok(key) => key,
            Err(answer) => return answer,
        };
        if self.inner.purge_protection {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "Operation \"purge\" is not allowed because purge protection is enabled for \
                     this vault. Key Vault service will automatically purge it after the \
                     retention period has passed.\r\nVault: {};location=local",
                    self.shared.options.vault_name
                ),
                None,
            );
        }
        self.inner.secrets.remove(&key);
        (StatusCode::NO_CONTENT, Value::Null)
    }

    pub(super) fn recover(&mut self, name: &str) -> Answer {
        let key = match self.settled_deleted(name) {
            Ok(key) => key,
            Err(answer) => return answer,
        };
        self.tick();
        let lag = self.shared.options.settle_lag;
        let Some(e) = self.inner.secrets.get_mut(&key) else {
            return deleted_not_found();
        };
        e.deleted = None;
        e.settling = lag;
        let e = &self.inner.secrets[&key];
        match e.versions.last() {
            Some(v) => (StatusCode::OK, self.bundle(&e.name, v, false, true)),
            None => deleted_not_found(),
        }
    }
}
