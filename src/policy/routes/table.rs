//! The classifier's data: every CRM operation the proxy knows, as rows of method + path shape
//! → needed scopes, plus the settings resources and their scope families.
//!
//! Only data lives here (and the `const fn` shorthands that keep rows readable); the matching
//! rules are in `routes/mod.rs`. Must not contain logic beyond building rows.

use super::super::canonical::Area;
use super::super::scope::{Operation, Service};
use super::{BodyKind, Need, OpT, Route, Seg, SubT};

pub(super) const G: u8 = 1;
pub(super) const P: u8 = 2;
pub(super) const U: u8 = 4;
pub(super) const A: u8 = 8;
pub(super) const D: u8 = 16;
pub(super) const ANY: u8 = G | P | U | A | D;

const C: Area = Area::Crm;
const B: Area = Area::Bulk;
const E: Area = Area::Email;

const M: Seg = Seg::Module(0);
const R: Seg = Seg::Module(1);
const K: Seg = Seg::Key;
const S: Seg = Seg::Settings;
const REST: Seg = Seg::Rest;
const fn l(word: &'static str) -> Seg {
    Seg::Lit(word)
}

const MT: OpT = OpT::Method;
const RD: OpT = OpT::Is(Operation::Read);
const CR: OpT = OpT::Is(Operation::Create);
const UP: OpT = OpT::Is(Operation::Update);
const DL: OpT = OpT::Is(Operation::Delete);
const AL: OpT = OpT::Is(Operation::All);
const CU: OpT = OpT::Is(Operation::Custom);

const fn crm(family: &'static str, op: OpT) -> Need {
    Need::Scope {
        service: Service::Crm,
        family,
        sub: SubT::No,
        op,
    }
}
const fn crm_sub(family: &'static str, sub: &'static str, op: OpT) -> Need {
    Need::Scope {
        service: Service::Crm,
        family,
        sub: SubT::Fixed(sub),
        op,
    }
}
const fn crm_slot(family: &'static str, slot: u8, op: OpT) -> Need {
    Need::Scope {
        service: Service::Crm,
        family,
        sub: SubT::Slot(slot),
        op,
    }
}
/// `ZohoCRM.modules.{module in slot}.{op}`
const fn mo(slot: u8, op: OpT) -> Need {
    crm_slot("modules", slot, op)
}
/// `ZohoCRM.modules.{name}.{op}`
const fn mod_named(name: &'static str, op: OpT) -> Need {
    crm_sub("modules", name, op)
}
/// `ZohoCRM.settings.{sub}.{op}`
const fn st(sub: &'static str, op: OpT) -> Need {
    crm_sub("settings", sub, op)
}
const SEARCH: Need = Need::Scope {
    service: Service::Search,
    family: "securesearch",
    sub: SubT::No,
    op: RD,
};
const SET_MT: Need = Need::Settings(MT);
const SET_RD: Need = Need::Settings(RD);

const fn r(area: Area, methods: u8, pat: &'static [Seg], needs: &'static [Need]) -> Route {
    Route {
        area,
        methods,
        pat,
        needs,
        body: None,
    }
}
const fn rb(
    area: Area,
    methods: u8,
    pat: &'static [Seg],
    needs: &'static [Need],
    body: BodyKind,
) -> Route {
    Route {
        area,
        methods,
        pat,
        needs,
        body: Some(body),
    }
}

/// Settings resources (`/crm/{v}/settings/{name}/...`) and the scope family governing each.
/// (path word, service, family, sub-scope)
pub(crate) const SETTINGS_RESOURCES: &[(&str, Service, &str, Option<&str>)] = &[
    ("fields", Service::Crm, "settings", Some("fields")),
    ("layouts", Service::Crm, "settings", Some("layouts")),
    ("modules", Service::Crm, "settings", Some("modules")),
    (
        "custom_views",
        Service::Crm,
        "settings",
        Some("custom_views"),
    ),
    (
        "related_lists",
        Service::Crm,
        "settings",
        Some("related_lists"),
    ),
    ("roles", Service::Crm, "settings", Some("roles")),
    ("profiles", Service::Crm, "settings", Some("profiles")),
    ("territories", Service::Crm, "settings", Some("territories")),
    ("variables", Service::Crm, "settings", Some("variables")),
    (
        "variable_groups",
        Service::Crm,
        "settings",
        Some("variable_groups"),
    ),
    ("tags", Service::Crm, "settings", Some("tags")),
    ("tab_groups", Service::Crm, "settings", Some("tab_groups")),
    ("macros", Service::Crm, "settings", Some("macros")),
    (
        "custom_links",
        Service::Crm,
        "settings",
        Some("custom_links"),
    ),
    (
        "custom_buttons",
        Service::Crm,
        "settings",
        Some("custom_buttons"),
    ),
    ("pipeline", Service::Crm, "settings", Some("pipeline")),
    ("wizards", Service::Crm, "settings", Some("wizards")),
    (
        "assignment_rules",
        Service::Crm,
        "settings",
        Some("assignment_rules"),
    ),
    ("cadences", Service::Crm, "settings", Some("cadences")),
    (
        "scoring_rules",
        Service::Crm,
        "settings",
        Some("scoring_rules"),
    ),
    (
        "business_hours",
        Service::Crm,
        "settings",
        Some("business_hours"),
    ),
    // Holidays belong to business hours (shift and business-hours calendars).
    ("holidays", Service::Crm, "settings", Some("business_hours")),
    ("portals", Service::Crm, "settings", Some("clientportal")),
    (
        "duplicate_check_preference",
        Service::Crm,
        "settings",
        Some("duplicate_check_preference"),
    ),
    ("emails", Service::Crm, "settings", Some("emails")),
    ("fiscal_year", Service::Crm, "settings", Some("fiscal_year")),
    (
        "global_picklists",
        Service::Crm,
        "settings",
        Some("global_picklist"),
    ),
    (
        "map_dependency",
        Service::Crm,
        "settings",
        Some("map_dependency"),
    ),
    (
        "record_locking_configurations",
        Service::Crm,
        "settings",
        Some("record_locking_configurations"),
    ),
    ("recycle_bin", Service::Crm, "settings", Some("recycle_bin")),
    (
        "unsubscribe_links",
        Service::Crm,
        "settings",
        Some("unsubscribe"),
    ),
    (
        "unsubscribe_link",
        Service::Crm,
        "settings",
        Some("unsubscribe"),
    ),
    ("user_groups", Service::Crm, "settings", Some("user_groups")),
    (
        "users_unavailability",
        Service::Crm,
        "settings",
        Some("users_unavailability"),
    ),
    (
        "audit_log_export",
        Service::Crm,
        "settings",
        Some("audit_logs"),
    ),
    (
        "data_sharing",
        Service::Crm,
        "settings",
        Some("data_sharing"),
    ),
    ("signals", Service::Crm, "settings", Some("signals")),
    ("currencies", Service::Crm, "settings", Some("currencies")),
    // The v8 OpenAPI files name these scopes for the preference endpoints.
    (
        "call_preferences",
        Service::Crm,
        "settings",
        Some("modules"),
    ),
    (
        "service_preferences",
        Service::Crm,
        "settings",
        Some("modules"),
    ),
    (
        "appointment_preferences",
        Service::Crm,
        "modules",
        Some("appointments"),
    ),
    ("email_templates", Service::Crm, "templates", Some("email")),
    (
        "inventory_templates",
        Service::Crm,
        "templates",
        Some("inventory"),
    ),
];

/// The classifier table. Order matters: the first row whose shape and method match wins, so
/// fixed shapes precede generic ones.
pub(crate) const ROUTES: &[Route] = &[
    // ---- top-level fixed endpoints -------------------------------------------------------
    rb(C, P, &[l("coql")], &[crm("coql", RD)], BodyKind::Coql),
    rb(
        C,
        P,
        &[l("__composite_requests")],
        &[crm("composite_requests", CU)],
        BodyKind::Composite,
    ),
    r(C, G, &[l("__features")], &[crm("features", RD)]),
    r(C, G, &[l("__features"), K], &[crm("features", RD)]),
    r(C, G, &[l("__apis")], &[crm("apis", RD)]),
    r(
        C,
        G | P,
        &[l("__zia_org_enrichment")],
        &[crm_sub("Zia", "enrichment", MT)],
    ),
    r(
        C,
        G,
        &[l("__zia_org_enrichment"), K],
        &[crm_sub("Zia", "enrichment", MT)],
    ),
    r(
        C,
        G | P,
        &[l("__zia_people_enrichment")],
        &[crm_sub("Zia", "enrichment", MT)],
    ),
    r(
        C,
        G,
        &[l("__zia_people_enrichment"), K],
        &[crm_sub("Zia", "enrichment", MT)],
    ),
    r(
        C,
        ANY,
        &[l("actions"), l("watch")],
        &[crm("notifications", MT)],
    ),
    r(
        C,
        G,
        &[l("actions"), l("email_available")],
        &[mod_named("emails", RD)],
    ),
    r(C, G | P, &[l("files")], &[crm("Files", MT)]),
    r(
        C,
        P,
        &[l("upload")],
        &[
            Need::Scope {
                service: Service::Files,
                family: "files",
                sub: SubT::No,
                op: AL,
            },
            crm("bulk", CR),
        ],
    ),
    r(
        C,
        G | P,
        &[l("functions"), K, l("actions"), l("execute")],
        &[crm_sub("functions", "execute", MT)],
    ),
    // ---- users ---------------------------------------------------------------------------
    r(C, G | P | U, &[l("users")], &[crm("users", MT)]),
    r(
        C,
        G,
        &[l("users"), l("actions"), l("count")],
        &[crm("users", RD)],
    ),
    r(
        C,
        P,
        &[l("users"), l("actions"), l("transfer_and_delete")],
        &[crm("users", DL)],
    ),
    r(
        C,
        G,
        &[l("users"), l("actions"), l("transfer_and_delete")],
        &[crm("users", RD)],
    ),
    r(C, G | U | D, &[l("users"), K], &[crm("users", MT)]),
    r(
        C,
        G,
        &[l("users"), K, l("actions"), l("associated_groups")],
        &[crm("users", RD), st("user_groups", RD)],
    ),
    r(
        C,
        P,
        &[l("users"), K, l("actions"), l("transfer_and_delete")],
        &[crm("users", DL)],
    ),
    r(
        C,
        G | U | D,
        &[l("users"), K, l("territories")],
        &[st("territories", MT)],
    ),
    r(
        C,
        G | D,
        &[l("users"), K, l("territories"), K],
        &[st("territories", MT)],
    ),
    // ---- org -----------------------------------------------------------------------------
    r(C, G, &[l("org")], &[crm("org", RD)]),
    r(C, G | P | D, &[l("org"), l("photo")], &[crm("org", MT)]),
    r(
        C,
        G | P | U,
        &[l("org"), l("currencies")],
        &[st("currencies", MT)],
    ),
    r(
        C,
        P | U,
        &[l("org"), l("currencies"), l("actions"), l("enable")],
        &[st("currencies", MT)],
    ),
    r(
        C,
        G,
        &[
            l("org"),
            l("currencies"),
            l("actions"),
            l("available_currencies"),
        ],
        &[st("currencies", RD)],
    ),
    r(
        C,
        G | U,
        &[l("org"), l("currencies"), K],
        &[st("currencies", MT)],
    ),
    // ---- settings ------------------------------------------------------------------------
    // POST endpoints that only read or that delete.
    r(
        C,
        P,
        &[
            l("settings"),
            l("user_groups"),
            l("actions"),
            l("get_assigned"),
        ],
        &[st("user_groups", RD)],
    ),
    r(
        C,
        P,
        &[
            l("settings"),
            l("user_groups"),
            l("actions"),
            l("get_unassigned"),
        ],
        &[st("user_groups", RD)],
    ),
    r(
        C,
        P,
        &[l("settings"), l("data_sharing"), l("rules"), l("search")],
        &[st("data_sharing", RD)],
    ),
    r(
        C,
        G | P,
        &[
            l("settings"),
            l("data_sharing"),
            l("rules"),
            l("actions"),
            l("summary"),
        ],
        &[st("data_sharing", RD)],
    ),
    r(
        C,
        P,
        &[
            l("settings"),
            l("data_sharing"),
            l("rules"),
            l("actions"),
            l("run"),
        ],
        &[st("data_sharing", UP)],
    ),
    r(
        C,
        P,
        &[
            l("settings"),
            l("territories"),
            l("actions"),
            l("transfer_and_delete"),
        ],
        &[st("territories", DL)],
    ),
    r(
        C,
        P,
        &[
            l("settings"),
            l("territories"),
            K,
            l("actions"),
            l("transfer_and_delete"),
        ],
        &[st("territories", DL)],
    ),
    r(
        C,
        P,
        &[l("settings"), l("tags"), l("actions"), l("mass_delete")],
        &[st("tags", DL)],
    ),
    // Field dependencies live under a layout but have their own scope.
    r(
        C,
        G | P,
        &[l("settings"), l("layouts"), K, l("map_dependency")],
        &[st("map_dependency", MT)],
    ),
    r(
        C,
        G | U | D,
        &[l("settings"), l("layouts"), K, l("map_dependency"), K],
        &[st("map_dependency", MT)],
    ),
    // Scoring, assignment and cadence rules sit under `automation`.
    r(C, ANY, &[l("settings"), l("automation"), S], &[SET_MT]),
    r(
        C,
        ANY,
        &[l("settings"), l("automation"), S, REST],
        &[SET_MT],
    ),
    r(
        C,
        G,
        &[l("settings"), S, K, l("__child_territories")],
        &[SET_RD],
    ),
    r(C, ANY, &[l("settings"), S], &[SET_MT]),
    r(C, ANY, &[l("settings"), S, REST], &[SET_MT]),
    // ---- modules: collection level ---------------------------------------------------------
    // Contact roles are configured on the Contacts module (the spec names module scopes).
    r(
        C,
        G | P | U | D,
        &[Seg::Named("Contacts", 0), l("roles")],
        &[mo(0, MT)],
    ),
    r(
        C,
        G | U | D,
        &[Seg::Named("Contacts", 0), l("roles"), K],
        &[mo(0, MT)],
    ),
    r(C, G | P | U | D, &[M], &[mo(0, MT)]),
    // Upsert can overwrite existing records: it needs UPDATE as well as CREATE.
    r(C, P, &[M, l("upsert")], &[mo(0, CR), mo(0, UP)]),
    r(C, G, &[M, l("search")], &[mo(0, RD), SEARCH]),
    r(C, G, &[M, l("deleted")], &[mo(0, RD)]),
    r(C, G, &[M, l("deleted"), K, R], &[mo(0, RD), mo(1, RD)]),
    r(
        C,
        G | P,
        &[M, l("actions"), l("count")],
        &[mo(0, RD), SEARCH],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("mass_update")],
        &[crm_slot("mass_update", 0, UP)],
    ),
    r(
        C,
        G,
        &[M, l("actions"), l("mass_update")],
        &[crm_slot("mass_update", 0, RD)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("mass_delete")],
        &[crm_slot("mass_delete", 0, DL)],
    ),
    r(
        C,
        G,
        &[M, l("actions"), l("mass_delete")],
        &[crm_slot("mass_delete", 0, RD)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("mass_convert")],
        &[crm_slot("mass_convert", 0, CR)],
    ),
    r(
        C,
        G,
        &[M, l("actions"), l("mass_convert")],
        &[crm_slot("mass_convert", 0, RD)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("change_owner")],
        &[crm("change_owner", CR)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("mass_change_owner")],
        &[crm("change_owner", CR)],
    ),
    r(
        C,
        G,
        &[M, l("actions"), l("mass_change_owner")],
        &[crm("change_owner", RD)],
    ),
    r(C, P, &[M, l("actions"), l("add_tags")], &[mo(0, UP)]),
    r(C, P, &[M, l("actions"), l("remove_tags")], &[mo(0, UP)]),
    r(
        C,
        P,
        &[M, l("actions"), l("assign_territories")],
        &[mo(0, UP)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("remove_territories")],
        &[mo(0, UP)],
    ),
    r(C, G, &[M, l("actions"), l("fetch_full_data")], &[mo(0, RD)]),
    r(
        C,
        P,
        &[M, l("actions"), l("share_emails")],
        &[mo(0, UP), mod_named("emails", UP)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("unshare_emails")],
        &[mo(0, UP), mod_named("emails", UP)],
    ),
    r(C, P, &[M, l("actions"), l("unblock_email")], &[mo(0, UP)]),
    r(
        C,
        P,
        &[M, l("actions"), l("enrol_in_cadences")],
        &[mo(0, UP), st("cadences", RD)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("unenrol_from_cadences")],
        &[mo(0, UP), st("cadences", RD)],
    ),
    r(
        C,
        P,
        &[M, l("actions"), l("portal_invite")],
        &[st("clientportal", CR)],
    ),
    r(
        C,
        G,
        &[M, l("actions"), l("portal_invite")],
        &[st("clientportal", RD)],
    ),
    r(
        C,
        U,
        &[M, l("actions"), l("run_scoring_rules")],
        &[mo(0, UP), st("scoring_rules", RD)],
    ),
    // ---- modules: record level -------------------------------------------------------------
    r(C, G | U | D, &[M, K], &[mo(0, MT)]),
    r(C, G | P | D, &[M, K, l("photo")], &[mo(0, MT)]),
    r(C, G, &[M, K, l("__conversion_options")], &[mo(0, RD)]),
    r(C, G, &[M, K, l("__timeline")], &[mo(0, RD)]),
    r(
        C,
        G,
        &[M, K, l("__emails_sharing_details")],
        &[mo(0, RD), mod_named("emails", RD)],
    ),
    r(
        C,
        G | P | U,
        &[M, K, l("__email_drafts")],
        &[mo(0, MT), mod_named("emails", MT)],
    ),
    r(
        C,
        G | U | D,
        &[M, K, l("__email_drafts"), K],
        &[mo(0, MT), mod_named("emails", MT)],
    ),
    r(C, P, &[M, K, l("actions"), l("convert")], &[mo(0, CR)]),
    r(
        C,
        G | U,
        &[M, K, l("actions"), l("blueprint")],
        &[mo(0, MT)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("send_mail")],
        &[crm_slot("send_mail", 0, CR)],
    ),
    r(
        C,
        ANY ^ A,
        &[M, K, l("actions"), l("share")],
        &[crm_slot("share", 0, MT)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("change_owner")],
        &[crm("change_owner", CR)],
    ),
    r(C, P, &[M, K, l("actions"), l("add_tags")], &[mo(0, UP)]),
    r(C, P, &[M, K, l("actions"), l("remove_tags")], &[mo(0, UP)]),
    r(C, G, &[M, K, l("actions"), l("merge")], &[mo(0, RD)]),
    // A merge rewrites the master record and deletes the others.
    r(
        C,
        P,
        &[M, K, l("actions"), l("merge")],
        &[mo(0, UP), mo(0, DL)],
    ),
    r(C, P, &[M, K, l("actions"), l("clone")], &[mo(0, CR)]),
    r(
        C,
        P,
        &[M, K, l("actions"), l("assign_territories")],
        &[mo(0, UP)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("remove_territories")],
        &[mo(0, UP)],
    ),
    r(
        C,
        G,
        &[M, K, l("actions"), l("fetch_full_data")],
        &[mo(0, RD)],
    ),
    r(
        C,
        G,
        &[M, K, l("actions"), l("download_fields_attachment")],
        &[mo(0, RD)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("share_emails")],
        &[mo(0, UP), mod_named("emails", UP)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("unshare_emails")],
        &[mo(0, UP), mod_named("emails", UP)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("unblock_email")],
        &[mo(0, UP)],
    ),
    r(C, P, &[M, K, l("actions"), l("cancel")], &[mo(0, UP)]),
    r(
        C,
        P,
        &[M, K, l("actions"), l("associate_email")],
        &[mo(0, CR), mod_named("emails", CR)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("portal_invite")],
        &[st("clientportal", CR)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("send_mail_merge")],
        &[mo(0, RD), st("mailmerge", CR)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("download_mail_merge")],
        &[mo(0, RD), st("mailmerge", CR)],
    ),
    r(
        C,
        P,
        &[M, K, l("actions"), l("sign_mail_merge")],
        &[mo(0, RD), st("mailmerge", CR)],
    ),
    r(
        C,
        G,
        &[
            M,
            K,
            Seg::Named("Emails", 1),
            l("actions"),
            l("download_attachments"),
        ],
        &[mo(0, RD), mo(1, RD)],
    ),
    r(
        C,
        G,
        &[
            M,
            K,
            Seg::Named("Emails", 1),
            l("actions"),
            l("download_inline_images"),
        ],
        &[mo(0, RD), mo(1, RD)],
    ),
    // Related lists, notes, attachments, emails and locking information under a record: the
    // parent module and the related module, both with the method's operation.
    r(C, G | P | U | D, &[M, K, R], &[mo(0, MT), mo(1, MT)]),
    r(C, G | U | D, &[M, K, R, K], &[mo(0, MT), mo(1, MT)]),
    // ---- bulk ------------------------------------------------------------------------------
    rb(B, P, &[l("read")], &[crm("bulk", RD)], BodyKind::BulkRead),
    r(B, G, &[l("read"), K], &[crm("bulk", RD)]),
    r(B, G, &[l("read"), K, l("result")], &[crm("bulk", RD)]),
    rb(B, P, &[l("write")], &[crm("bulk", CR)], BodyKind::BulkWrite),
    r(B, G, &[l("write"), K], &[crm("bulk", RD)]),
    r(B, G | P, &[l("backup")], &[crm_sub("bulk", "backup", MT)]),
    r(
        B,
        G,
        &[l("backup"), l("urls")],
        &[crm_sub("bulk", "backup", RD)],
    ),
    r(
        B,
        G,
        &[l("backup"), l("history")],
        &[crm_sub("bulk", "backup", RD)],
    ),
    r(
        B,
        U,
        &[l("backup"), K, l("actions"), l("cancel")],
        &[crm_sub("bulk", "backup", UP)],
    ),
    // ---- email settings --------------------------------------------------------------------
    r(
        E,
        G | U,
        &[l("settings"), l("compose")],
        &[st("emails", MT)],
    ),
];
