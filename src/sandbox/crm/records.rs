//! The fake CRM's in-memory data: modules Leads, Contacts and Deals with a few seeded records,
//! and the record operations (list, get, create, update, delete, search, COQL, users, org).
//!
//! Owns: record storage and Zoho's JSON shapes for record APIs (REFERENCE §5 and contract 6).
//! Must not: know about HTTP, tokens or fault switches; it returns a [`Reply`] the server turns
//! into a response.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::query::{parse_criteria, Coql, Matcher};

/// The most records a module holds. When a create would pass it, the older half is dropped at
/// once, so a demo under write load keeps a bounded memory (and creates stay O(1) amortised);
/// a module then holds between half of this and all of it, the newest records kept.
pub(crate) const MAX_RECORDS: usize = 20_000;

/// One record: field name → value, always with a string `id`.
pub(crate) type Record = Map<String, Value>;

/// What a record operation answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Status with a JSON body.
    Json(u16, Value),
    /// `204 No Content`, empty body (no records).
    NoContent,
}

/// The id of the fake org's only user.
pub(crate) const USER_ID: &str = "554023000000235001";
/// The fake org's id (also its `zgid`).
pub(crate) const ORG_ID: &str = "554023000";

/// Zoho's error body shape.
pub(crate) fn error_body(code: &str, message: &str, details: Value) -> Value {
    json!({ "code": code, "details": details, "message": message, "status": "error" })
}

fn error(status: u16, code: &str, message: &str, details: Value) -> Reply {
    Reply::Json(status, error_body(code, message, details))
}

fn invalid_module() -> Reply {
    error(
        400,
        "INVALID_MODULE",
        "the module name given seems to be invalid",
        json!({ "resource_path_index": 0 }),
    )
}

fn required_param(name: &str) -> Reply {
    error(
        400,
        "REQUIRED_PARAM_MISSING",
        "One of the expected parameter is missing",
        json!({ "param_name": name }),
    )
}

fn invalid_body() -> Reply {
    error(
        400,
        "INVALID_DATA",
        "body",
        json!({ "expected_data_type": "jsonobject" }),
    )
}

fn owner() -> Value {
    json!({ "name": "Fake Admin", "id": USER_ID, "email": "admin@fake-zoho.invalid" })
}

/// UTC time as Zoho formats it, e.g. `2024-05-01T10:00:00+00:00`.
fn zoho_time_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    zoho_time(secs)
}

fn zoho_time(unix_secs: u64) -> String {
    let (year, month, day, h, mi, sec) =
        crate::util::clock::utc_fields(unix_secs.saturating_mul(1000));
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{sec:02}+00:00")
}

/// The fake CRM's records.
#[derive(Debug)]
pub(crate) struct CrmStore {
    modules: BTreeMap<&'static str, Vec<Record>>,
    next_id: u64,
}

impl Default for CrmStore {
    fn default() -> Self {
        Self::seeded()
    }
}

fn seed(fields: Value, id: u64) -> Record {
    let mut rec = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    rec.insert("id".into(), Value::from(id.to_string()));
    rec.insert("Owner".into(), owner());
    rec.insert(
        "Created_Time".into(),
        Value::from("2024-05-01T10:00:00+00:00"),
    );
    rec.insert(
        "Modified_Time".into(),
        Value::from("2024-05-01T10:00:00+00:00"),
    );
    rec
}

impl CrmStore {
    /// Leads, Contacts and Deals with three records each.
    pub(crate) fn seeded() -> CrmStore {
        let mut modules = BTreeMap::new();
        modules.insert(
            "Leads",
            vec![
                seed(json!({"First_Name":"John","Last_Name":"Smith","Email":"j.smith@abc.com","Company":"ABC Corp","Phone":"555-0101","Lead_Source":"Web"}), 554_023_000_000_235_011),
                seed(json!({"First_Name":"Maria","Last_Name":"Garcia","Email":"m.garcia@example.com","Company":"Example Ltd","Phone":"555-0102","Lead_Source":"Trade Show"}), 554_023_000_000_235_012),
                seed(json!({"First_Name":"Wei","Last_Name":"Chen","Email":"wei.chen@example.org","Company":"Chen Imports","Phone":"555-0103","Lead_Source":"Referral"}), 554_023_000_000_235_013),
            ],
        );
        modules.insert(
            "Contacts",
            vec![
                seed(json!({"First_Name":"Alice","Last_Name":"Jones","Email":"alice@jones.example","Phone":"555-0201","Account_Name":{"name":"Jones & Co","id":"554023000000236001"}}), 554_023_000_000_236_011),
                seed(json!({"First_Name":"Bob","Last_Name":"Brown","Email":"bob.brown@example.com","Phone":"555-0202","Account_Name":{"name":"Brown Bakery","id":"554023000000236002"}}), 554_023_000_000_236_012),
                seed(json!({"First_Name":"Chloe","Last_Name":"Martin","Email":"chloe@martin.example","Phone":"555-0203","Account_Name":null}), 554_023_000_000_236_013),
            ],
        );
        modules.insert(
            "Deals",
            vec![
                seed(json!({"Deal_Name":"ABC renewal","Stage":"Negotiation/Review","Amount":12000.0,"Closing_Date":"2024-09-30"}), 554_023_000_000_237_011),
                seed(json!({"Deal_Name":"Example expansion","Stage":"Qualification","Amount":4500.0,"Closing_Date":"2024-10-15"}), 554_023_000_000_237_012),
                seed(json!({"Deal_Name":"Chen pilot","Stage":"Closed Won","Amount":800.0,"Closing_Date":"2024-06-01"}), 554_023_000_000_237_013),
            ],
        );
        CrmStore {
            modules,
            next_id: 554_023_000_000_300_001,
        }
    }

    /// The canonical API name of `module` (matched ASCII case-insensitively), if it exists.
    pub(crate) fn module_name(&self, module: &str) -> Option<&'static str> {
        self.modules
            .keys()
            .find(|m| m.eq_ignore_ascii_case(module))
            .copied()
    }

    fn records(&self, module: &'static str) -> Vec<&Record> {
        let mut recs: Vec<&Record> = self
            .modules
            .get(module)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        // Zoho's default order is by id, descending.
        recs.sort_by_key(|r| std::cmp::Reverse(id_of(r)));
        recs
    }

    fn fresh_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }

    /// `GET /{Module}` with optional `fields`, `per_page` (1–200, default 200), `page`.
    pub(crate) fn list(&self, module: &str, q: &dyn Fn(&str) -> Option<String>) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        let per_page = match q("per_page").map(|v| v.parse::<usize>()) {
            None => 200,
            Some(Ok(n)) if (1..=200).contains(&n) => n,
            Some(_) => return invalid_param("per_page"),
        };
        let page = match q("page").map(|v| v.parse::<usize>()) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => return invalid_param("page"),
        };
        let fields = q("fields");
        let all = self.records(module);
        let start = (page - 1).saturating_mul(per_page);
        let chunk: Vec<Value> = all
            .iter()
            .skip(start)
            .take(per_page)
            .map(|r| project(r, fields.as_deref()))
            .collect();
        if chunk.is_empty() {
            return Reply::NoContent;
        }
        let more = all.len() > start + chunk.len();
        Reply::Json(
            200,
            json!({
                "data": chunk.clone(),
                "info": {
                    "per_page": per_page, "next_page_token": null, "count": chunk.len(),
                    "sort_by": "id", "page": page, "previous_page_token": null,
                    "page_token_expiry": null, "sort_order": "desc", "more_records": more
                }
            }),
        )
    }

    /// `GET /{Module}/{id}`.
    pub(crate) fn get(&self, module: &str, id: &str, fields: Option<&str>) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        match self
            .records(module)
            .into_iter()
            .find(|r| id_of_str(r) == id)
        {
            Some(r) => Reply::Json(200, json!({ "data": [project(r, fields)] })),
            None => Reply::NoContent,
        }
    }

    /// `POST /{Module}` with `{"data":[{...}, ...]}` (1–100 records).
    pub(crate) fn create(&mut self, module: &str, body: Option<&[u8]>) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        let items = match data_array(body) {
            Ok(items) => items,
            Err(reply) => return reply,
        };
        let now = zoho_time_now();
        let mut results = Vec::new();
        for mut item in items {
            let id = self.fresh_id();
            item.insert("id".into(), Value::from(id.clone()));
            item.insert("Owner".into(), owner());
            item.insert("Created_Time".into(), Value::from(now.clone()));
            item.insert("Modified_Time".into(), Value::from(now.clone()));
            if let Some(recs) = self.modules.get_mut(module) {
                if recs.len() >= MAX_RECORDS {
                    recs.drain(..MAX_RECORDS / 2);
                }
                recs.push(item);
            }
            results.push(success("record added", &id, &now));
        }
        Reply::Json(201, json!({ "data": results }))
    }

    /// `PUT /{Module}/{id}` (`id` given) or `PUT /{Module}` (ids inside the records).
    pub(crate) fn update(&mut self, module: &str, id: Option<&str>, body: Option<&[u8]>) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        let items = match data_array(body) {
            Ok(items) => items,
            Err(reply) => return reply,
        };
        let now = zoho_time_now();
        let mut results = Vec::new();
        let mut failures = 0;
        for item in items {
            let target = id
                .map(str::to_owned)
                .or_else(|| item.get("id").and_then(Value::as_str).map(str::to_owned));
            let Some(target) = target else {
                failures += 1;
                results.push(json!({"code":"MANDATORY_NOT_FOUND","details":{"api_name":"id"},"message":"required field not found","status":"error"}));
                continue;
            };
            let rec = self
                .modules
                .get_mut(module)
                .and_then(|recs| recs.iter_mut().find(|r| id_of_str(r) == target));
            match rec {
                Some(rec) => {
                    for (k, v) in item {
                        if !matches!(k.as_str(), "id" | "Created_Time" | "Owner") {
                            rec.insert(k, v);
                        }
                    }
                    rec.insert("Modified_Time".into(), Value::from(now.clone()));
                    results.push(success("record updated", &target, &now));
                }
                None => {
                    failures += 1;
                    results.push(json!({"code":"INVALID_DATA","details":{"api_name":"id","id":target},"message":"the related id given seems to be invalid","status":"error"}));
                }
            }
        }
        Reply::Json(
            multi_status(failures, results.len()),
            json!({ "data": results }),
        )
    }

    /// `DELETE /{Module}/{id}` or `DELETE /{Module}?ids=a,b`.
    pub(crate) fn delete(&mut self, module: &str, ids: &[&str]) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        if ids.is_empty() {
            return required_param("ids");
        }
        let mut results = Vec::new();
        let mut failures = 0;
        for id in ids {
            let removed = self.modules.get_mut(module).is_some_and(|recs| {
                let before = recs.len();
                recs.retain(|r| id_of_str(r) != *id);
                recs.len() != before
            });
            if removed {
                results.push(json!({"code":"SUCCESS","details":{"id":id},"message":"record deleted","status":"success"}));
            } else {
                failures += 1;
                results.push(json!({"code":"INVALID_DATA","details":{"id":id},"message":"the related id given seems to be invalid","status":"error"}));
            }
        }
        Reply::Json(
            multi_status(failures, results.len()),
            json!({ "data": results }),
        )
    }

    /// `GET /{Module}/search` with `criteria`, `email`, `phone` or `word`.
    pub(crate) fn search(&self, module: &str, q: &dyn Fn(&str) -> Option<String>) -> Reply {
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        let matcher: Matcher = if let Some(c) = q("criteria") {
            match parse_criteria(&c) {
                Some(m) => m,
                None => {
                    return error(
                        400,
                        "INVALID_QUERY",
                        "invalid query formed",
                        json!({ "param_name": "criteria" }),
                    )
                }
            }
        } else if let Some(email) = q("email") {
            Box::new(move |r| field_str(r, "Email").is_some_and(|v| v.eq_ignore_ascii_case(&email)))
        } else if let Some(phone) = q("phone") {
            Box::new(move |r| field_str(r, "Phone").is_some_and(|v| v == phone))
        } else if let Some(word) = q("word") {
            let word = word.to_lowercase();
            Box::new(move |r| {
                r.values()
                    .any(|v| v.as_str().is_some_and(|s| s.to_lowercase().contains(&word)))
            })
        } else {
            return required_param("criteria");
        };
        let found: Vec<Value> = self
            .records(module)
            .into_iter()
            .filter(|r| matcher(r))
            .map(|r| project(r, q("fields").as_deref()))
            .collect();
        if found.is_empty() {
            return Reply::NoContent;
        }
        Reply::Json(
            200,
            json!({ "data": found.clone(), "info": { "per_page": 200, "count": found.len(), "page": 1, "more_records": false } }),
        )
    }

    /// `POST /coql` with `{"select_query": "select a, b from Module [where ...] [limit n[, m]]"}`.
    pub(crate) fn coql(&self, body: Option<&[u8]>) -> Reply {
        let Some(query) = body
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| {
                v.get("select_query")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        else {
            return required_param("select_query");
        };
        let syntax = || {
            error(
                400,
                "SYNTAX_ERROR",
                "error occured while parsing the query",
                json!({ "clause": "select" }),
            )
        };
        let Some(parsed) = Coql::parse(&query) else {
            return syntax();
        };
        let Some(module) = self.module_name(&parsed.module) else {
            return error(
                400,
                "INVALID_QUERY",
                "invalid module given",
                json!({ "clause": "from" }),
            );
        };
        let fields = parsed.fields.join(",");
        let matched: Vec<&Record> = self
            .records(module)
            .into_iter()
            .filter(|r| parsed.matches(r))
            .collect();
        let page: Vec<Value> = matched
            .iter()
            .skip(parsed.offset)
            .take(parsed.limit)
            .map(|r| project(r, Some(&fields)))
            .collect();
        if page.is_empty() {
            return Reply::NoContent;
        }
        let more = matched.len() > parsed.offset + page.len();
        Reply::Json(
            200,
            json!({ "data": page.clone(), "info": { "count": page.len(), "more_records": more } }),
        )
    }

    /// `GET /users` (any `type`) or `GET /users/{id}`.
    pub(crate) fn users(&self, id: Option<&str>) -> Reply {
        if id.is_some_and(|id| id != USER_ID) {
            return Reply::NoContent;
        }
        Reply::Json(
            200,
            json!({
                "users": [{
                    "id": USER_ID, "full_name": "Fake Admin", "first_name": "Fake", "last_name": "Admin",
                    "email": "admin@fake-zoho.invalid", "status": "active", "confirm": true,
                    "role": { "name": "CEO", "id": "554023000000015969" },
                    "profile": { "name": "Administrator", "id": "554023000000015972" },
                    "time_zone": "Etc/UTC", "locale": "en_US", "country_locale": "en_US"
                }],
                "info": { "per_page": 200, "count": 1, "page": 1, "more_records": false }
            }),
        )
    }

    /// `GET /settings/modules`.
    pub(crate) fn settings_modules(&self) -> Reply {
        let modules: Vec<Value> = self
            .modules
            .keys()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "api_name": m, "module_name": m, "plural_label": m,
                    "singular_label": m.trim_end_matches('s'), "api_supported": true,
                    "id": format!("5540230000000020{:02}", i + 1), "generated_type": "default"
                })
            })
            .collect();
        Reply::Json(200, json!({ "modules": modules }))
    }

    /// `GET /settings/fields?module=M`: the fields the seeded records use.
    pub(crate) fn settings_fields(&self, module: Option<&str>) -> Reply {
        let Some(module) = module else {
            return required_param("module");
        };
        let Some(module) = self.module_name(module) else {
            return invalid_module();
        };
        let mut names: Vec<(String, &'static str)> = Vec::new();
        for rec in self.modules.get(module).into_iter().flatten() {
            for (k, v) in rec {
                if !names.iter().any(|(n, _)| n == k) {
                    let ty = match v {
                        Value::Number(_) => "double",
                        Value::Object(_) => "lookup",
                        _ if k.ends_with("_Time") => "datetime",
                        _ => "text",
                    };
                    names.push((k.clone(), ty));
                }
            }
        }
        let fields: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, (n, ty))| {
                json!({ "api_name": n, "field_label": n.replace('_', " "), "data_type": ty,
                        "id": format!("55402300000000{:04}", i + 1), "read_only": n == "id" })
            })
            .collect();
        Reply::Json(200, json!({ "fields": fields }))
    }
}

fn invalid_param(name: &str) -> Reply {
    error(
        400,
        "INVALID_DATA",
        "the given param value is invalid",
        json!({ "param_name": name }),
    )
}

fn multi_status(failures: usize, total: usize) -> u16 {
    match failures {
        0 => 200,
        f if f == total => 400,
        _ => 207,
    }
}

fn success(message: &str, id: &str, time: &str) -> Value {
    json!({
        "code": "SUCCESS",
        "details": { "Modified_Time": time, "Modified_By": owner(), "Created_Time": time,
                     "id": id, "Created_By": owner() },
        "message": message,
        "status": "success"
    })
}

/// The records of a `{"data":[{...}]}` body (1–100 objects).
fn data_array(body: Option<&[u8]>) -> Result<Vec<Record>, Reply> {
    let value: Value = body
        .and_then(|b| serde_json::from_slice(b).ok())
        .ok_or_else(invalid_body)?;
    let Some(items) = value.get("data").and_then(Value::as_array) else {
        return Err(required_param("data"));
    };
    if items.is_empty() || items.len() > 100 {
        return Err(error(
            400,
            "LIMIT_EXCEEDED",
            "the number of records must be between 1 and 100",
            json!({ "limit": 100 }),
        ));
    }
    items
        .iter()
        .map(|i| i.as_object().cloned().ok_or_else(invalid_body))
        .collect()
}

fn id_of(r: &Record) -> u64 {
    id_of_str(r).parse().unwrap_or(0)
}

fn id_of_str(r: &Record) -> &str {
    r.get("id").and_then(Value::as_str).unwrap_or_default()
}

fn field_str<'a>(r: &'a Record, f: &str) -> Option<&'a str> {
    r.get(f).and_then(Value::as_str)
}

/// `fields=a,b` keeps those fields plus `id`; `None` keeps everything.
fn project(r: &Record, fields: Option<&str>) -> Value {
    let Some(fields) = fields else {
        return Value::Object(r.clone());
    };
    let mut out = Map::new();
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        out.insert(f.to_owned(), r.get(f).cloned().unwrap_or(Value::Null));
    }
    out.insert("id".into(), Value::from(id_of_str(r)));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn zoho_time_formats_known_instants() {
        const CASES: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00+00:00"),
            (1_714_557_600, "2024-05-01T10:00:00+00:00"),
            (951_782_400, "2000-02-29T00:00:00+00:00"),
        ];
        for (secs, want) in CASES {
            assert_eq!(zoho_time(*secs), *want, "formatting unix time {secs}");
        }
    }

    #[test]
    fn list_pages_and_projects() {
        let s = CrmStore::seeded();
        let Reply::Json(200, body) = s.list(
            "Leads",
            &q(&[("fields", "Last_Name,Email"), ("per_page", "2")]),
        ) else {
            panic!("list of Leads must be 200 JSON");
        };
        assert_eq!(body["info"]["count"], 2, "per_page=2 limits the page");
        assert_eq!(
            body["info"]["more_records"], true,
            "third lead is on page 2"
        );
        assert_eq!(
            body["data"][0]["Last_Name"], "Chen",
            "newest id first (desc order)"
        );
        assert!(
            body["data"][0].get("Company").is_none(),
            "fields projection drops Company"
        );
        assert_eq!(
            s.list("Leads", &q(&[("page", "9")])),
            Reply::NoContent,
            "empty page is 204"
        );
        assert!(
            matches!(s.list("Nope", &q(&[])), Reply::Json(400, _)),
            "unknown module is 400"
        );
    }

    #[test]
    fn coql_subset_filters() {
        let s = CrmStore::seeded();
        const CASES: &[(&str, usize)] = &[
            ("select Last_Name from Leads where Last_Name = 'Smith'", 1),
            (
                "select Last_Name, Email from Leads where Email like '%example%' limit 1",
                1,
            ),
            (
                "select Last_Name from Leads where Last_Name = 'Smith' or Last_Name = 'Chen'",
                2,
            ),
            (
                "select Last_Name from Contacts where Account_Name is null",
                1,
            ),
            ("SELECT Deal_Name FROM Deals LIMIT 0, 2", 2),
        ];
        for (query, want) in CASES {
            let body = serde_json::to_vec(&json!({ "select_query": query })).unwrap_or_default();
            match s.coql(Some(&body)) {
                Reply::Json(200, v) => assert_eq!(v["info"]["count"], *want, "rows for {query}"),
                other => panic!("query {query} failed: {other:?}"),
            }
        }
        let none = serde_json::to_vec(
            &json!({"select_query":"select Last_Name from Leads where Last_Name = 'Nobody'"}),
        )
        .unwrap_or_default();
        assert_eq!(s.coql(Some(&none)), Reply::NoContent, "no match is 204");
        let bad =
            serde_json::to_vec(&json!({"select_query":"delete from Leads"})).unwrap_or_default();
        assert!(
            matches!(s.coql(Some(&bad)), Reply::Json(400, _)),
            "non-select is a syntax error"
        );
    }

    #[test]
    fn create_update_delete_round_trip() {
        let mut s = CrmStore::seeded();
        let Reply::Json(201, created) =
            s.create("Leads", Some(br#"{"data":[{"Last_Name":"New"}]}"#))
        else {
            panic!("create must be 201");
        };
        let id = created["data"][0]["details"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            created["data"][0]["code"], "SUCCESS",
            "create reports SUCCESS"
        );
        let upd = s.update("Leads", Some(&id), Some(br#"{"data":[{"Email":"n@x.y"}]}"#));
        assert!(matches!(upd, Reply::Json(200, _)), "update by id is 200");
        let Reply::Json(200, got) = s.get("Leads", &id, None) else {
            panic!("created record is readable");
        };
        assert_eq!(got["data"][0]["Email"], "n@x.y", "update changed Email");
        assert!(
            matches!(s.delete("Leads", &[id.as_str()]), Reply::Json(200, _)),
            "delete is 200"
        );
        assert_eq!(
            s.get("Leads", &id, None),
            Reply::NoContent,
            "deleted record is gone"
        );
        assert!(
            matches!(s.create("Leads", Some(b"not json")), Reply::Json(400, _)),
            "bad body is 400"
        );
    }

    #[test]
    fn search_variants() {
        let s = CrmStore::seeded();
        const CASES: &[(&str, &str, bool)] = &[
            ("criteria", "(Last_Name:equals:Smith)", true),
            (
                "criteria",
                "((Last_Name:starts_with:Gar)and(Company:equals:Example Ltd))",
                true,
            ),
            ("email", "J.SMITH@abc.com", true),
            ("phone", "555-0000", false),
            ("word", "imports", true),
        ];
        for (k, v, hit) in CASES {
            let lookup = move |name: &str| (name == *k).then(|| (*v).to_owned());
            let got = s.search("Leads", &lookup);
            assert_eq!(matches!(got, Reply::Json(200, _)), *hit, "search {k}={v}");
        }
    }

    #[test]
    fn a_module_keeps_its_newest_records_within_the_bound() {
        let mut s = CrmStore::seeded();
        let count = |s: &CrmStore| s.modules.get("Leads").map_or(0, Vec::len);
        let body = br#"{"data":[{"Last_Name":"Load"}]}"#;
        let mut last = String::new();
        for _ in 0..MAX_RECORDS + 10 {
            let Reply::Json(201, reply) = s.create("Leads", Some(body)) else {
                panic!("a create is 201 JSON");
            };
            last = reply["data"][0]["details"]["id"]
                .as_str()
                .expect("the new id")
                .to_string();
        }
        let n = count(&s);
        assert!(
            (MAX_RECORDS / 2..=MAX_RECORDS).contains(&n),
            "bounded: {n} records"
        );
        assert!(
            matches!(s.get("Leads", &last, None), Reply::Json(200, _)),
            "the newest record is kept"
        );
        assert_eq!(
            s.get("Leads", "554023000000235011", None),
            Reply::NoContent,
            "the oldest (a seeded lead) is dropped"
        );
    }
}
