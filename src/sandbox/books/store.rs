//! The in-memory records of the Books and Inventory fake: contacts, items and invoices, kept
//! apart per product and per organization, with Zoho's answer envelopes.
//!
//! Owns: [`BooksStore`], the [`Resource`] vocabulary and its messages. Must not: check tokens,
//! organizations or limits (the caller does), or panic on any body.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::FinanceProduct;
use crate::sandbox::crm::records::Reply;

/// Zoho's error envelope `{"code": n, "message": "..."}`.
pub(crate) fn envelope(code: u32, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// A resource family the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Resource {
    Contacts,
    Items,
    Invoices,
}

impl Resource {
    /// The resource of a collection path segment.
    pub(crate) fn from_segment(seg: &str) -> Option<Resource> {
        match seg {
            "contacts" => Some(Resource::Contacts),
            "items" => Some(Resource::Items),
            "invoices" => Some(Resource::Invoices),
            _ => None,
        }
    }

    /// The list key (`contacts`).
    fn plural(self) -> &'static str {
        match self {
            Resource::Contacts => "contacts",
            Resource::Items => "items",
            Resource::Invoices => "invoices",
        }
    }

    /// The single-record key (`contact`).
    fn singular(self) -> &'static str {
        match self {
            Resource::Contacts => "contact",
            Resource::Items => "item",
            Resource::Invoices => "invoice",
        }
    }

    /// The id field (`contact_id`).
    fn id_field(self) -> &'static str {
        match self {
            Resource::Contacts => "contact_id",
            Resource::Items => "item_id",
            Resource::Invoices => "invoice_id",
        }
    }

    /// The field a create must carry.
    fn required(self) -> &'static str {
        match self {
            Resource::Contacts => "contact_name",
            Resource::Items => "name",
            Resource::Invoices => "customer_id",
        }
    }

    /// Messages of create, update and delete.
    fn messages(self) -> [&'static str; 3] {
        match self {
            Resource::Contacts => [
                "The contact has been added.",
                "Contact information has been saved.",
                "The contact has been deleted.",
            ],
            Resource::Items => [
                "The item has been added.",
                "The item details have been updated.",
                "The item has been deleted.",
            ],
            Resource::Invoices => [
                "The invoice has been created.",
                "Invoice information has been updated.",
                "The invoice has been deleted.",
            ],
        }
    }

    /// `404 {"code":1002,"message":"Invoice does not exist."}`.
    fn not_found(self) -> Reply {
        let noun = match self {
            Resource::Contacts => "Contact",
            Resource::Items => "Item",
            Resource::Invoices => "Invoice",
        };
        Reply::Json(404, envelope(1002, &format!("{noun} does not exist.")))
    }
}

/// The records of one organization in one product; ids keep creation order.
#[derive(Debug, Default)]
struct OrgRecords {
    records: HashMap<Resource, BTreeMap<u64, Map<String, Value>>>,
    invoices_made: u64,
}

/// Every product's and organization's records.
#[derive(Debug)]
pub(crate) struct BooksStore {
    orgs: HashMap<(FinanceProduct, String), OrgRecords>,
    next_id: u64,
}

impl Default for BooksStore {
    fn default() -> BooksStore {
        BooksStore {
            orgs: HashMap::new(),
            // Books ids are 15-digit numbers.
            next_id: 460_000_000_000_001,
        }
    }
}

/// The page size Books uses when `per_page` is absent (and its maximum).
const PER_PAGE: usize = 200;

/// The body as a JSON object: a JSON body, or the `JSONString` field of a form body.
fn parse_object(body: Option<&[u8]>) -> Option<Map<String, Value>> {
    let body = body?;
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        return Some(m);
    }
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "JSONString")
        .and_then(|(_, v)| match serde_json::from_str::<Value>(&v) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
}

fn invalid_json() -> Reply {
    Reply::Json(400, envelope(4, "Invalid value passed for JSONString"))
}

impl BooksStore {
    fn org(&mut self, product: FinanceProduct, org: &str) -> &mut OrgRecords {
        self.orgs.entry((product, org.to_owned())).or_default()
    }

    /// The records of one resource of one organization.
    fn records(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
    ) -> &mut BTreeMap<u64, Map<String, Value>> {
        self.org(product, org).records.entry(res).or_default()
    }

    /// `GET /x`: one page (`page`, `per_page`), oldest first.
    pub(crate) fn list(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
        page: Option<&str>,
        per_page: Option<&str>,
    ) -> Reply {
        let page = page.and_then(|p| p.parse::<usize>().ok()).unwrap_or(1);
        let per_page = per_page
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(PER_PAGE);
        if page == 0 || per_page == 0 || per_page > PER_PAGE {
            return Reply::Json(
                400,
                envelope(2, "Invalid value passed for page or per_page"),
            );
        }
        let all = self.org(product, org).records.entry(res).or_default();
        let rows: Vec<Value> = all
            .values()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .cloned()
            .map(Value::Object)
            .collect();
        let has_more = all.len() > page.saturating_mul(per_page);
        let mut body = json!({
            "code": 0,
            "message": "success",
            "page_context": { "page": page, "per_page": per_page, "has_more_page": has_more },
        });
        body[res.plural()] = Value::Array(rows);
        Reply::Json(200, body)
    }

    /// `POST /x`: `201` with the new record.
    pub(crate) fn create(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
        body: Option<&[u8]>,
    ) -> Reply {
        let Some(mut rec) = parse_object(body) else {
            return invalid_json();
        };
        if rec
            .get(res.required())
            .is_none_or(|v| v.is_null() || v.as_str().is_some_and(str::is_empty))
        {
            return Reply::Json(
                400,
                envelope(4, &format!("Invalid value passed for {}", res.required())),
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        let customer_name = match (res, rec.get("customer_id").and_then(Value::as_str)) {
            (Resource::Invoices, Some(cid)) => self
                .org(product, org)
                .records
                .get(&Resource::Contacts)
                .and_then(|c| {
                    c.values()
                        .find(|r| r.get("contact_id").and_then(Value::as_str) == Some(cid))
                })
                .and_then(|r| r.get("contact_name").cloned()),
            _ => None,
        };
        let records = self.org(product, org);
        rec.insert(res.id_field().to_owned(), Value::from(id.to_string()));
        let defaults: Vec<(&str, Value)> = match res {
            Resource::Contacts => vec![("contact_type", "customer".into())],
            Resource::Items => vec![("rate", 0.into())],
            Resource::Invoices => {
                records.invoices_made += 1;
                let mut d = vec![
                    (
                        "invoice_number",
                        format!("INV-{:06}", records.invoices_made).into(),
                    ),
                    ("line_items", Value::Array(Vec::new())),
                ];
                if let Some(name) = customer_name {
                    d.push(("customer_name", name));
                }
                d.push(("status", "draft".into()));
                d
            }
        };
        for (k, v) in defaults {
            rec.entry(k.to_owned()).or_insert(v);
        }
        if res != Resource::Invoices {
            rec.entry("status".to_owned()).or_insert("active".into());
        }
        records
            .records
            .entry(res)
            .or_default()
            .insert(id, rec.clone());
        let mut answer = envelope(0, res.messages()[0]);
        answer[res.singular()] = Value::Object(rec);
        Reply::Json(201, answer)
    }

    /// The stored key of an id path segment (ids are numbers).
    fn key(id: &str) -> Option<u64> {
        id.parse::<u64>().ok()
    }

    /// `GET /x/{id}`.
    pub(crate) fn get(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
        id: &str,
    ) -> Reply {
        let found = Self::key(id).and_then(|k| self.records(product, org, res).get(&k).cloned());
        match found {
            Some(rec) => {
                let mut answer = envelope(0, "success");
                answer[res.singular()] = Value::Object(rec);
                Reply::Json(200, answer)
            }
            None => res.not_found(),
        }
    }

    /// `PUT /x/{id}`: the body's fields replace the record's (its id stays).
    pub(crate) fn update(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
        id: &str,
        body: Option<&[u8]>,
    ) -> Reply {
        let Some(rec) = Self::key(id).and_then(|k| self.records(product, org, res).get_mut(&k))
        else {
            return res.not_found();
        };
        let Some(changes) = parse_object(body) else {
            return invalid_json();
        };
        for (k, v) in changes {
            if k != res.id_field() {
                rec.insert(k, v);
            }
        }
        let mut answer = envelope(0, res.messages()[1]);
        answer[res.singular()] = Value::Object(rec.clone());
        Reply::Json(200, answer)
    }

    /// `DELETE /x/{id}`.
    pub(crate) fn delete(
        &mut self,
        product: FinanceProduct,
        org: &str,
        res: Resource,
        id: &str,
    ) -> Reply {
        let removed = Self::key(id).and_then(|k| self.records(product, org, res).remove(&k));
        match removed {
            Some(_) => Reply::Json(200, envelope(0, res.messages()[2])),
            None => res.not_found(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKS: FinanceProduct = FinanceProduct::Books;

    fn body(reply: Reply) -> (u16, Value) {
        match reply {
            Reply::Json(s, v) => (s, v),
            Reply::NoContent => (204, Value::Null),
        }
    }

    #[test]
    fn create_get_update_delete_an_invoice() {
        let mut s = BooksStore::default();
        let (status, contact) = body(s.create(
            BOOKS,
            "60001",
            Resource::Contacts,
            Some(br#"{"contact_name":"Ann"}"#),
        ));
        assert_eq!(status, 201, "{contact}");
        let cid = contact["contact"]["contact_id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let (status, inv) = body(s.create(
            BOOKS,
            "60001",
            Resource::Invoices,
            Some(format!(r#"{{"customer_id":"{cid}"}}"#).as_bytes()),
        ));
        assert_eq!(status, 201);
        assert_eq!(inv["message"], "The invoice has been created.");
        assert_eq!(inv["invoice"]["customer_name"], "Ann");
        assert_eq!(inv["invoice"]["invoice_number"], "INV-000001");
        let id = inv["invoice"]["invoice_id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let (status, got) = body(s.get(BOOKS, "60001", Resource::Invoices, &id));
        assert_eq!((status, &got["invoice"]), (200, &inv["invoice"]));
        let (status, _) = body(s.get(BOOKS, "60002", Resource::Invoices, &id));
        assert_eq!(status, 404, "another org does not see it");
        let (status, upd) = body(s.update(
            BOOKS,
            "60001",
            Resource::Invoices,
            &id,
            Some(br#"{"status":"sent","invoice_id":"1"}"#),
        ));
        assert_eq!(status, 200);
        assert_eq!(upd["invoice"]["status"], "sent");
        assert_eq!(upd["invoice"]["invoice_id"], id.as_str(), "id kept");
        let (status, del) = body(s.delete(BOOKS, "60001", Resource::Invoices, &id));
        assert_eq!(
            (status, del),
            (200, envelope(0, "The invoice has been deleted."))
        );
        let (status, gone) = body(s.get(BOOKS, "60001", Resource::Invoices, &id));
        assert_eq!(
            (status, gone),
            (404, envelope(1002, "Invoice does not exist."))
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        let mut s = BooksStore::default();
        let (status, b) = body(s.create(BOOKS, "60001", Resource::Items, Some(b"[1]")));
        assert_eq!((status, b["code"].clone()), (400, json!(4)));
        let (status, b) = body(s.create(BOOKS, "60001", Resource::Items, Some(b"{}")));
        assert_eq!(
            (status, b),
            (400, envelope(4, "Invalid value passed for name"))
        );
        let (status, b) = body(s.create(
            BOOKS,
            "60001",
            Resource::Items,
            Some(b"JSONString=%7B%22name%22%3A%22Bolt%22%7D"),
        ));
        assert_eq!((status, &b["item"]["name"]), (201, &json!("Bolt")), "{b}");
    }

    #[test]
    fn lists_page() {
        let mut s = BooksStore::default();
        for n in 0..3 {
            let rec = format!(r#"{{"name":"i{n}"}}"#);
            s.create(BOOKS, "60001", Resource::Items, Some(rec.as_bytes()));
        }
        let (status, page) = body(s.list(BOOKS, "60001", Resource::Items, Some("2"), Some("2")));
        assert_eq!(status, 200);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(page["items"][0]["name"], "i2");
        assert_eq!(page["page_context"]["has_more_page"], false);
        let (_, first) = body(s.list(BOOKS, "60001", Resource::Items, None, Some("2")));
        assert_eq!(first["page_context"]["has_more_page"], true);
    }
}
