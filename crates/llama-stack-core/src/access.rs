//! Llama Stack's access policy rule language: resource rules (`server.auth.access_policy`)
//! decide who may create, read, update or delete which resource; route rules
//! (`server.auth.route_policy`) decide who may call which HTTP route.
//!
//! Rules are validated and compiled once ([`AccessPolicy::new`], [`RoutePolicy::new`]):
//! conditions become an enum and `regex:` patterns are compiled, so a check is a walk over
//! the rules that allocates nothing in the common case.
//!
//! ```
//! use llama_stack_core::access::{AccessPolicy, Action, ProtectedResource};
//! use llama_stack_core::User;
//!
//! let policy = AccessPolicy::from_value(&serde_json::json!([
//!     {"permit": {"actions": ["read"], "resource": "model::*"}},
//!     {"permit": {"actions": ["create", "read", "update", "delete"]}, "when": "user is owner"},
//! ]))?;
//! let alice = User::new("alice").with_attribute("roles", ["user"]);
//! let model = ProtectedResource::new("model", "openai/gpt-4o", None);
//! assert!(policy.is_allowed(Some(&alice), Action::Read, &model));
//! assert_eq!(
//!     policy.check(Some(&alice), Action::Delete, &model).unwrap_err().to_string(),
//!     "User 'alice' (attributes: roles=['user']) cannot perform action 'delete' on resource 'model::openai/gpt-4o'"
//! );
//! // No user means authentication is off: everything is allowed.
//! assert!(policy.is_allowed(None, Action::Delete, &model));
//! # Ok::<(), llama_stack_core::Error>(())
//! ```

use std::cell::OnceCell;
use std::fmt;

use regex::Regex;
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use crate::context::User;
use crate::error::{Error, Result};

/// Action on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create or register a resource.
    Create,
    /// Read, list or use a resource.
    Read,
    /// Change a resource (e.g. insert into a vector store).
    Update,
    /// Delete or unregister a resource.
    Delete,
}

impl Action {
    /// All four actions, in declaration order.
    pub const ALL: [Action; 4] = [Action::Create, Action::Read, Action::Update, Action::Delete];

    /// The wire name: `create`, `read`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Create => 1,
            Action::Read => 2,
            Action::Update => 4,
            Action::Delete => 8,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy sees of a resource: its type (`model`, `vector_store`,
/// `sql_record::openai_files`, ...), its identifier and its owner (`None` for resources
/// created at startup or by anonymous callers).
#[derive(Debug, Clone, Copy)]
pub struct ProtectedResource<'a> {
    /// The resource type, e.g. `model`.
    pub resource_type: &'a str,
    /// The identifier within the type, e.g. `ollama/llama3.2:3b`.
    pub identifier: &'a str,
    /// The user who created the resource, if any.
    pub owner: Option<&'a User>,
}

impl<'a> ProtectedResource<'a> {
    /// A resource of `resource_type` named `identifier`, owned by `owner`.
    pub fn new(resource_type: &'a str, identifier: &'a str, owner: Option<&'a User>) -> Self {
        ProtectedResource {
            resource_type,
            identifier,
            owner,
        }
    }

    /// `<type>::<identifier>`, the string resource patterns are matched against.
    pub fn qualified_id(&self) -> String {
        format!("{}::{}", self.resource_type, self.identifier)
    }
}

/// One value or a list of values, as rules accept for `actions`, `paths`, `when` and
/// `unless`. Serializes back in the form it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value, e.g. `actions: read`.
    One(T),
    /// A list, e.g. `actions: [create, read]`.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

impl<T> From<T> for OneOrMany<T> {
    fn from(value: T) -> Self {
        OneOrMany::One(value)
    }
}

impl<T> FromIterator<T> for OneOrMany<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        OneOrMany::Many(iter.into_iter().collect())
    }
}

// Hand-written rather than `#[serde(untagged)]` so that a bad value reports the inner
// error (`unknown variant `reed`, expected one of ...`) instead of "did not match any variant".
impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|item| T::deserialize(item).map_err(D::Error::custom))
                .collect::<Result<Vec<T>, D::Error>>()
                .map(OneOrMany::Many),
            other => T::deserialize(other)
                .map(OneOrMany::One)
                .map_err(D::Error::custom),
        }
    }
}

/// The scope of a resource rule: which actions, optionally limited to one principal and
/// to a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Exact `user.principal` the rule is limited to; absent = any user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The actions the rule covers: one action or a list.
    pub actions: OneOrMany<Action>,
    /// Resource pattern: an exact `<type>::<id>`, `<type>::*`, or `regex:<re>` matched at
    /// the start of `<type>::<id>`; absent = any resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl Scope {
    /// A scope covering `actions` on any resource for any user.
    pub fn new(actions: impl IntoIterator<Item = Action>) -> Self {
        Scope {
            principal: None,
            actions: actions.into_iter().collect(),
            resource: None,
        }
    }

    /// Limits the scope to one principal.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Limits the scope to a resource pattern (`model::*`, `regex:model::llama.*`, ...).
    pub fn with_resource(mut self, pattern: impl Into<String>) -> Self {
        self.resource = Some(pattern.into());
        self
    }
}

/// One resource rule as written in the config, e.g.
///
/// ```yaml
/// - permit: {principal: alice, actions: [create, read], resource: "model::*"}
///   when: "user in owners roles"      # string or list; all must hold
///   description: text
/// ```
///
/// Exactly one of `permit` / `forbid`; at most one of `when` / `unless`. Validated by
/// [`AccessPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Allow the scope's actions when the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit: Option<Scope>,
    /// Deny the scope's actions when the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid: Option<Scope>,
    /// The rule applies only if all these conditions hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<OneOrMany<String>>,
    /// The rule applies only if not all of these conditions hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<OneOrMany<String>>,
    /// Free text, for people reading the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl AccessRule {
    /// A rule permitting `scope`.
    pub fn permit(scope: Scope) -> Self {
        AccessRule {
            permit: Some(scope),
            forbid: None,
            when: None,
            unless: None,
            description: None,
        }
    }

    /// A rule forbidding `scope`.
    pub fn forbid(scope: Scope) -> Self {
        AccessRule {
            permit: None,
            forbid: Some(scope),
            when: None,
            unless: None,
            description: None,
        }
    }

    /// Applies the rule only when all `conditions` hold.
    pub fn with_when<I, S>(mut self, conditions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.when = Some(conditions.into_iter().map(Into::into).collect());
        self
    }

    /// Applies the rule only when not all `conditions` hold.
    pub fn with_unless<I, S>(mut self, conditions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.unless = Some(conditions.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// The resource access policy: ordered rules, the first applying one decides, no applying
/// rule denies. An empty policy is Llama Stack's default policy: a user may do anything
/// with resources that are unowned, that they own, or whose owner shares one of their
/// `roles`, `teams`, `projects` or `namespaces` values.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
    compiled: Vec<CompiledAccessRule>,
}

/// The attributes whose shared values grant access under the default policy.
const DEFAULT_SHARED_ATTRIBUTES: [&str; 4] = ["roles", "teams", "projects", "namespaces"];

impl AccessPolicy {
    /// Validates and compiles `rules`. Errors are `Config` errors naming the rule, e.g.
    /// `access_policy[2].when: unknown condition 'user is admin'`.
    pub fn new(rules: Vec<AccessRule>) -> Result<Self> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| CompiledAccessRule::compile(index, rule))
            .collect::<Result<Vec<_>>>()?;
        Ok(AccessPolicy { rules, compiled })
    }

    /// Reads and validates a list of rules from JSON (`null` = empty = default policy).
    /// Errors carry the path: `access_policy[1].permit.actions: unknown variant ...`.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        Self::new(rules_from_value("access_policy", value)?)
    }

    /// Llama Stack's default policy written out as rules (behaves like an empty policy).
    pub fn default_policy() -> Self {
        let rules: Vec<AccessRule> = DEFAULT_SHARED_ATTRIBUTES
            .iter()
            .map(|attr| format!("user in owners {attr}"))
            .chain(["user is owner".to_owned(), "resource is unowned".to_owned()])
            .map(|condition| AccessRule::permit(Scope::new(Action::ALL)).with_when([condition]))
            .collect();
        // The rules above are valid; should that ever change, the empty policy is the
        // same policy.
        Self::new(rules).unwrap_or_default()
    }

    /// The configured rules (empty when this is the implicit default policy).
    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// Whether this policy is the default policy: empty, or exactly the default rules in
    /// any order. Storage uses this to push the check down into SQL.
    pub fn is_default(&self) -> bool {
        if self.compiled.is_empty() {
            return true;
        }
        let mut seen = [false; DEFAULT_SHARED_ATTRIBUTES.len() + 2];
        self.compiled.iter().all(|rule| match rule.default_index() {
            Some(i) => {
                seen[i] = true;
                true
            }
            None => false,
        }) && seen.iter().all(|s| *s)
    }

    /// Whether `user` may perform `action` on `resource`. `user: None` means
    /// authentication is off, and then everything is allowed.
    pub fn is_allowed(
        &self,
        user: Option<&User>,
        action: Action,
        resource: &ProtectedResource<'_>,
    ) -> bool {
        let Some(user) = user else {
            return true;
        };
        if self.compiled.is_empty() {
            return default_allows(user, resource.owner);
        }
        let id = QualifiedId::new(resource);
        for rule in &self.compiled {
            if !rule.scope_matches(action, &id, &user.principal) {
                continue;
            }
            let applies = match &rule.guard {
                Guard::Always => true,
                Guard::When(conditions) => all_hold(conditions, user, resource.owner),
                Guard::Unless(conditions) => !all_hold(conditions, user, resource.owner),
            };
            if applies {
                return rule.effect == Effect::Permit;
            }
        }
        false
    }

    /// Like [`is_allowed`](Self::is_allowed), with Llama Stack's `Forbidden` error:
    /// `User 'alice' (attributes: roles=['user'], teams=['ml']) cannot perform action
    /// 'delete' on resource 'model::openai/gpt-4o'`.
    pub fn check(
        &self,
        user: Option<&User>,
        action: Action,
        resource: &ProtectedResource<'_>,
    ) -> Result<()> {
        match user {
            Some(user) if !self.is_allowed(Some(user), action, resource) => {
                Err(Error::forbidden(denied_message(user, action, resource))
                    .with_context("resource_id", resource.qualified_id())
                    .with_context("action", action.as_str()))
            }
            _ => Ok(()),
        }
    }
}

/// The default policy, evaluated directly.
fn default_allows(user: &User, owner: Option<&User>) -> bool {
    let Some(owner) = owner else {
        return true; // resource is unowned
    };
    owner.principal == user.principal
        || DEFAULT_SHARED_ATTRIBUTES
            .iter()
            .any(|attr| shares_value(user, owner, attr))
}

/// Owner and user both have `attr` values and share at least one.
fn shares_value(user: &User, owner: &User, attr: &str) -> bool {
    let mine = user.attribute(attr);
    owner.attribute(attr).iter().any(|v| mine.contains(v))
}

fn all_hold(conditions: &[Condition], user: &User, owner: Option<&User>) -> bool {
    conditions.iter().all(|c| c.holds(user, owner))
}

/// `User 'alice' (attributes: roles=['user']) cannot perform action ...`, with the values
/// written as Python prints a list of strings.
fn denied_message(user: &User, action: Action, resource: &ProtectedResource<'_>) -> String {
    let mut msg = format!("User '{}'", user.principal);
    if !user.attributes.is_empty() {
        msg.push_str(" (attributes: ");
        for (i, (name, values)) in user.attributes.iter().enumerate() {
            if i > 0 {
                msg.push_str(", ");
            }
            msg.push_str(name);
            msg.push_str("=[");
            for (j, value) in values.iter().enumerate() {
                if j > 0 {
                    msg.push_str(", ");
                }
                push_python_repr(&mut msg, value);
            }
            msg.push(']');
        }
        msg.push(')');
    }
    msg.push_str(&format!(
        " cannot perform action '{}' on resource '{}::{}'",
        action.as_str(),
        resource.resource_type,
        resource.identifier
    ));
    msg
}

/// Appends `s` quoted the way Python's `repr(str)` does.
fn push_python_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Scope of a route rule: the paths it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteScope {
    /// Path patterns: `*` (everything), `regex:<re>` (matched at the start), `/prefix*`,
    /// or an exact path; one string or a list.
    pub paths: OneOrMany<String>,
}

/// One route rule as written in the config, e.g.
///
/// ```yaml
/// - forbid: {paths: "regex:/v1/(chat|completions).*"}
///   unless: "user with admin in roles"
/// ```
///
/// Exactly one of `permit` / `forbid`; at most one of `when` / `unless`. Validated by
/// [`RoutePolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Allow the paths when the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit: Option<RouteScope>,
    /// Deny the paths when the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid: Option<RouteScope>,
    /// The rule applies only to authenticated users for whom all these conditions hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<OneOrMany<String>>,
    /// The rule applies only to authenticated users for whom none of these conditions
    /// holds (unlike resource rules, where not all must hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<OneOrMany<String>>,
    /// Free text, for people reading the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl RouteRule {
    /// A rule permitting `paths`.
    pub fn permit<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RouteRule {
            permit: Some(RouteScope {
                paths: paths.into_iter().map(Into::into).collect(),
            }),
            forbid: None,
            when: None,
            unless: None,
            description: None,
        }
    }

    /// A rule forbidding `paths`.
    pub fn forbid<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut rule = RouteRule::permit(paths);
        rule.forbid = rule.permit.take();
        rule
    }

    /// Applies the rule only when all `conditions` hold.
    pub fn with_when<I, S>(mut self, conditions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.when = Some(conditions.into_iter().map(Into::into).collect());
        self
    }

    /// Applies the rule only when none of `conditions` holds.
    pub fn with_unless<I, S>(mut self, conditions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.unless = Some(conditions.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// The route policy: ordered rules checked before any handler. An empty policy allows
/// every route; otherwise the first applying rule decides and no applying rule denies.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    rules: Vec<RouteRule>,
    compiled: Vec<CompiledRouteRule>,
}

impl RoutePolicy {
    /// Validates and compiles `rules`. Errors are `Config` errors naming the rule, e.g.
    /// `route_policy[0]: permit and forbid are mutually exclusive`.
    pub fn new(rules: Vec<RouteRule>) -> Result<Self> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| CompiledRouteRule::compile(index, rule))
            .collect::<Result<Vec<_>>>()?;
        Ok(RoutePolicy { rules, compiled })
    }

    /// Reads and validates a list of rules from JSON (`null` = empty), with the path of a
    /// bad value in the error.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        Self::new(rules_from_value("route_policy", value)?)
    }

    /// Whether there are no rules (then every route is allowed).
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// The configured rules.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Whether `user` (`None` = anonymous) may call `path`. One trailing `/` is ignored
    /// (except for `/` itself).
    pub fn is_allowed(&self, user: Option<&User>, path: &str) -> bool {
        if self.compiled.is_empty() {
            return true;
        }
        let path = normalize_route(path);
        for rule in &self.compiled {
            if !rule.patterns.iter().any(|p| p.matches(path)) {
                continue;
            }
            // Route conditions see no resource: owner conditions see an unowned one.
            let applies = match (&rule.guard, user) {
                (Guard::Always, _) => true,
                (_, None) => false,
                (Guard::When(conditions), Some(user)) => all_hold(conditions, user, None),
                (Guard::Unless(conditions), Some(user)) => {
                    !conditions.iter().any(|c| c.holds(user, None))
                }
            };
            if applies {
                return rule.effect == Effect::Permit;
            }
        }
        false
    }

    /// Like [`is_allowed`](Self::is_allowed), with Llama Stack's `Forbidden` error:
    /// `Access denied: insufficient permissions for route /v1/files`.
    pub fn check(&self, user: Option<&User>, path: &str) -> Result<()> {
        if self.is_allowed(user, path) {
            return Ok(());
        }
        let path = normalize_route(path);
        Err(Error::forbidden(format!(
            "Access denied: insufficient permissions for route {path}"
        ))
        .with_context("path", path))
    }
}

fn normalize_route(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => path,
    }
}

fn rules_from_value<T: DeserializeOwned>(name: &str, value: &serde_json::Value) -> Result<Vec<T>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // `[2].permit.actions`, or `.` when the top-level value itself is wrong.
        let path = match e.path().to_string() {
            p if p == "." => String::new(),
            p if p.starts_with('[') => p,
            p => format!(".{p}"),
        };
        Error::config(format!("{name}{path}: {}", e.inner()))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Permit,
    Forbid,
}

#[derive(Debug, Clone)]
enum Guard {
    Always,
    When(Vec<Condition>),
    Unless(Vec<Condition>),
}

/// A parsed condition; the text forms are in [`Condition::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    UserIsOwner,
    UserIsNotOwner,
    UserInOwners { attribute: String },
    UserNotInOwners { attribute: String },
    UserWith { value: String, attribute: String },
    UserWithout { value: String, attribute: String },
    ResourceIsUnowned,
}

impl Condition {
    fn parse(text: &str) -> Option<Self> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let condition = match words.as_slice() {
            ["user", "is", "owner"] => Condition::UserIsOwner,
            ["user", "is", "not", "owner"] => Condition::UserIsNotOwner,
            ["user", "with", value, "in", name] => Condition::UserWith {
                value: (*value).to_owned(),
                attribute: (*name).to_owned(),
            },
            ["user", "with", value, "not", "in", name] => Condition::UserWithout {
                value: (*value).to_owned(),
                attribute: (*name).to_owned(),
            },
            ["user", "in", "owners", name] => Condition::UserInOwners {
                attribute: (*name).to_owned(),
            },
            ["user", "not", "in", "owners", name] => Condition::UserNotInOwners {
                attribute: (*name).to_owned(),
            },
            ["resource", "is", "unowned"] => Condition::ResourceIsUnowned,
            _ => return None,
        };
        Some(condition)
    }

    fn holds(&self, user: &User, owner: Option<&User>) -> bool {
        match self {
            Condition::UserIsOwner => owner.is_some_and(|o| o.principal == user.principal),
            Condition::UserIsNotOwner => owner.is_none_or(|o| o.principal != user.principal),
            Condition::UserInOwners { attribute } => {
                owner.is_some_and(|o| shares_value(user, o, attribute))
            }
            Condition::UserNotInOwners { attribute } => {
                !owner.is_some_and(|o| shares_value(user, o, attribute))
            }
            Condition::UserWith { value, attribute } => user.attribute(attribute).contains(value),
            Condition::UserWithout { value, attribute } => {
                !user.attribute(attribute).contains(value)
            }
            Condition::ResourceIsUnowned => owner.is_none(),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::UserIsOwner => f.write_str("user is owner"),
            Condition::UserIsNotOwner => f.write_str("user is not owner"),
            Condition::UserInOwners { attribute } => write!(f, "user in owners {attribute}"),
            Condition::UserNotInOwners { attribute } => {
                write!(f, "user not in owners {attribute}")
            }
            Condition::UserWith { value, attribute } => {
                write!(f, "user with {value} in {attribute}")
            }
            Condition::UserWithout { value, attribute } => {
                write!(f, "user with {value} not in {attribute}")
            }
            Condition::ResourceIsUnowned => f.write_str("resource is unowned"),
        }
    }
}

/// Checks the permit/forbid and when/unless exclusivity shared by both rule kinds, parses
/// the conditions and returns the effect, the scope and the guard.
fn compile_common<'r, S>(
    at: &str,
    permit: Option<&'r S>,
    forbid: Option<&'r S>,
    when: Option<&OneOrMany<String>>,
    unless: Option<&OneOrMany<String>>,
) -> Result<(Effect, &'r S, Guard)> {
    let (effect, scope) = match (permit, forbid) {
        (Some(scope), None) => (Effect::Permit, scope),
        (None, Some(scope)) => (Effect::Forbid, scope),
        (Some(_), Some(_)) => {
            return Err(Error::config(format!(
                "{at}: permit and forbid are mutually exclusive"
            )))
        }
        (None, None) => {
            return Err(Error::config(format!(
                "{at}: one of permit or forbid is required"
            )))
        }
    };
    // As in Llama Stack, an empty string or list counts as absent.
    let present = |c: Option<&OneOrMany<String>>| match c {
        Some(OneOrMany::One(s)) => !s.is_empty(),
        Some(OneOrMany::Many(v)) => !v.is_empty(),
        None => false,
    };
    let guard = match (present(when), present(unless)) {
        (true, true) => {
            return Err(Error::config(format!(
                "{at}: when and unless are mutually exclusive"
            )))
        }
        (true, false) => Guard::When(parse_conditions(&format!("{at}.when"), when)?),
        (false, true) => Guard::Unless(parse_conditions(&format!("{at}.unless"), unless)?),
        (false, false) => Guard::Always,
    };
    Ok((effect, scope, guard))
}

fn parse_conditions(at: &str, conditions: Option<&OneOrMany<String>>) -> Result<Vec<Condition>> {
    let Some(conditions) = conditions else {
        return Ok(Vec::new());
    };
    let many = matches!(conditions, OneOrMany::Many(_));
    conditions
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Condition::parse(text).ok_or_else(|| {
                let at = if many {
                    format!("{at}[{i}]")
                } else {
                    at.to_owned()
                };
                Error::config(format!("{at}: unknown condition '{text}'"))
            })
        })
        .collect()
}

/// A regex matched at the start of the text only, like Python's `re.match`.
#[derive(Debug, Clone)]
enum StartRegex {
    /// Compiled as `\A(?:re)`.
    Anchored(Regex),
    /// The wrapped form did not compile (an `(?x)` comment on the last line swallows the
    /// closing parenthesis): search and require the leftmost match to start at 0.
    Unanchored(Regex),
    /// Invalid (or uses syntax this regex engine lacks): never matches.
    Invalid,
}

impl StartRegex {
    fn compile(policy: &str, index: usize, re: &str) -> Self {
        match Regex::new(re) {
            Ok(plain) => match Regex::new(&format!(r"\A(?:{re})")) {
                Ok(anchored) => StartRegex::Anchored(anchored),
                Err(_) => StartRegex::Unanchored(plain),
            },
            Err(error) => {
                tracing::warn!(
                    policy,
                    index,
                    pattern = re,
                    %error,
                    "invalid regex pattern in policy; it never matches"
                );
                StartRegex::Invalid
            }
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            StartRegex::Anchored(re) => re.is_match(text),
            StartRegex::Unanchored(re) => re.find(text).is_some_and(|m| m.start() == 0),
            StartRegex::Invalid => false,
        }
    }
}

#[derive(Debug, Clone)]
enum ResourcePattern {
    /// Equal to `<type>::<id>`.
    Exact(String),
    /// `<type>::*`: `<type>::<id>` starts with the pattern minus its `*`.
    Prefix(String),
    /// `regex:<re>`; the raw pattern string also matches itself, as upstream.
    Regex { raw: String, regex: StartRegex },
}

impl ResourcePattern {
    fn compile(index: usize, pattern: &str) -> Self {
        if let Some(re) = pattern.strip_prefix("regex:") {
            ResourcePattern::Regex {
                raw: pattern.to_owned(),
                regex: StartRegex::compile("access_policy", index, re),
            }
        } else if pattern.ends_with("::*") {
            ResourcePattern::Prefix(pattern[..pattern.len() - 1].to_owned())
        } else {
            ResourcePattern::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, id: &QualifiedId<'_>) -> bool {
        match self {
            ResourcePattern::Exact(s) => id.equals(s),
            ResourcePattern::Prefix(p) => id.starts_with(p),
            ResourcePattern::Regex { raw, regex } => id.equals(raw) || regex.matches(id.joined()),
        }
    }
}

/// `<type>::<id>` without building the string unless a regex needs it.
struct QualifiedId<'a> {
    parts: [&'a str; 3],
    joined: OnceCell<String>,
}

impl<'a> QualifiedId<'a> {
    fn new(resource: &ProtectedResource<'a>) -> Self {
        QualifiedId {
            parts: [resource.resource_type, "::", resource.identifier],
            joined: OnceCell::new(),
        }
    }

    fn equals(&self, s: &str) -> bool {
        self.starts_with(s) && s.len() == self.parts.iter().map(|p| p.len()).sum::<usize>()
    }

    fn starts_with(&self, prefix: &str) -> bool {
        let mut rest = prefix.as_bytes();
        for part in self.parts {
            let part = part.as_bytes();
            if rest.len() <= part.len() {
                return part.starts_with(rest);
            }
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    fn joined(&self) -> &str {
        self.joined.get_or_init(|| self.parts.concat())
    }
}

#[derive(Debug, Clone)]
struct CompiledAccessRule {
    effect: Effect,
    principal: Option<String>,
    /// Bit set of [`Action::bit`].
    actions: u8,
    resource: Option<ResourcePattern>,
    guard: Guard,
}

impl CompiledAccessRule {
    fn compile(index: usize, rule: &AccessRule) -> Result<Self> {
        let at = format!("access_policy[{index}]");
        let (effect, scope, guard) = compile_common(
            &at,
            rule.permit.as_ref(),
            rule.forbid.as_ref(),
            rule.when.as_ref(),
            rule.unless.as_ref(),
        )?;
        Ok(CompiledAccessRule {
            effect,
            // As in Llama Stack, an empty principal or resource means "any".
            principal: scope.principal.clone().filter(|p| !p.is_empty()),
            actions: scope.actions.as_slice().iter().fold(0, |b, a| b | a.bit()),
            resource: scope
                .resource
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| ResourcePattern::compile(index, r)),
            guard,
        })
    }

    fn scope_matches(&self, action: Action, id: &QualifiedId<'_>, principal: &str) -> bool {
        self.actions & action.bit() != 0
            && self.principal.as_deref().is_none_or(|p| p == principal)
            && self.resource.as_ref().is_none_or(|r| r.matches(id))
    }

    /// Which default rule this is (0..6), if it is one.
    fn default_index(&self) -> Option<usize> {
        let all = Action::ALL.iter().fold(0, |b, a| b | a.bit());
        if self.effect != Effect::Permit
            || self.actions != all
            || self.principal.is_some()
            || self.resource.is_some()
        {
            return None;
        }
        let Guard::When(conditions) = &self.guard else {
            return None;
        };
        match conditions.as_slice() {
            [Condition::UserInOwners { attribute }] => DEFAULT_SHARED_ATTRIBUTES
                .iter()
                .position(|a| a == attribute),
            [Condition::UserIsOwner] => Some(DEFAULT_SHARED_ATTRIBUTES.len()),
            [Condition::ResourceIsUnowned] => Some(DEFAULT_SHARED_ATTRIBUTES.len() + 1),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum PathPattern {
    Any,
    Regex(StartRegex),
    Prefix(String),
    Exact(String),
}

impl PathPattern {
    fn compile(index: usize, pattern: &str) -> Self {
        if pattern == "*" {
            PathPattern::Any
        } else if let Some(re) = pattern.strip_prefix("regex:") {
            PathPattern::Regex(StartRegex::compile("route_policy", index, re))
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            PathPattern::Prefix(prefix.to_owned())
        } else {
            PathPattern::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Regex(re) => re.matches(path),
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathPattern::Exact(exact) => path == exact,
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRouteRule {
    effect: Effect,
    patterns: Vec<PathPattern>,
    guard: Guard,
}

impl CompiledRouteRule {
    fn compile(index: usize, rule: &RouteRule) -> Result<Self> {
        let at = format!("route_policy[{index}]");
        let (effect, scope, guard) = compile_common(
            &at,
            rule.permit.as_ref(),
            rule.forbid.as_ref(),
            rule.when.as_ref(),
            rule.unless.as_ref(),
        )?;
        Ok(CompiledRouteRule {
            effect,
            patterns: scope
                .paths
                .as_slice()
                .iter()
                .map(|p| PathPattern::compile(index, p))
                .collect(),
            guard,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;

    fn user(principal: &str, attributes: &[(&str, &[&str])]) -> User {
        attributes
            .iter()
            .fold(User::new(principal), |u, (name, values)| {
                u.with_attribute(*name, values.iter().copied())
            })
    }

    fn policy(rules: serde_json::Value) -> AccessPolicy {
        AccessPolicy::from_value(&rules).unwrap()
    }

    fn route_policy(rules: serde_json::Value) -> RoutePolicy {
        RoutePolicy::from_value(&rules).unwrap()
    }

    /// One decision: `who` performs `action` on `resource` (`<type>::<id>`, split at the
    /// last `::`) owned by `owner`; `is_allowed` and `check` must both say `allowed`.
    fn check(
        policy: &AccessPolicy,
        who: Option<&User>,
        action: Action,
        resource: &str,
        owner: Option<&User>,
        allowed: bool,
    ) {
        let (resource_type, identifier) = resource.rsplit_once("::").unwrap();
        let resource = ProtectedResource::new(resource_type, identifier, owner);
        let context = format!(
            "{who:?} {action} {} owned by {owner:?} under {:?}",
            resource.qualified_id(),
            policy.rules()
        );
        assert_eq!(
            policy.is_allowed(who, action, &resource),
            allowed,
            "{context}"
        );
        match policy.check(who, action, &resource) {
            Ok(()) => assert!(allowed, "check passed: {context}"),
            Err(e) => {
                assert!(!allowed, "check failed: {context}");
                assert_eq!(e.kind(), ErrorKind::Forbidden);
            }
        }
    }

    /// One route decision; a denial must carry Llama Stack's message for `shown_path`.
    fn check_route(policy: &RoutePolicy, who: Option<&User>, path: &str, allowed: bool) {
        let context = format!("{who:?} {path} under {:?}", policy.rules());
        assert_eq!(policy.is_allowed(who, path), allowed, "{context}");
        match policy.check(who, path) {
            Ok(()) => assert!(allowed, "check passed: {context}"),
            Err(e) => {
                assert!(!allowed, "check failed: {context}");
                assert_eq!(e.kind(), ErrorKind::Forbidden);
                assert!(e
                    .message()
                    .starts_with("Access denied: insufficient permissions for route /"));
            }
        }
    }

    fn check_config_error<T: fmt::Debug>(result: Result<T>, expected: &str) {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(e.message(), expected);
    }

    #[test]
    fn actions_have_their_wire_names() {
        for (action, name) in Action::ALL
            .iter()
            .zip(["create", "read", "update", "delete"])
        {
            assert_eq!(action.as_str(), name);
            assert_eq!(action.to_string(), name);
            assert_eq!(serde_json::to_value(action).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<Action>(json!(name)).unwrap(),
                *action
            );
        }
        let r = ProtectedResource::new("sql_record::openai_files", "file-1", None);
        assert_eq!(r.qualified_id(), "sql_record::openai_files::file-1");
    }

    #[test]
    fn every_condition_form() {
        let alice = user("alice", &[("roles", &["dev"]), ("teams", &["ml"])]);
        let bob_ml = user("bob", &[("teams", &["ml"])]);
        let carol_web = user("carol", &[("teams", &["web"]), ("roles", &[])]);
        // (condition, owner, holds for alice)
        let cases: &[(&str, Option<&User>, bool)] = &[
            ("user is owner", Some(&alice), true),
            ("user is owner", Some(&bob_ml), false),
            ("user is owner", None, false),
            ("user is not owner", Some(&alice), false),
            ("user is not owner", Some(&bob_ml), true),
            ("user is not owner", None, true),
            ("user in owners teams", Some(&bob_ml), true),
            ("user in owners teams", Some(&carol_web), false),
            ("user in owners teams", None, false),
            ("user in owners roles", Some(&bob_ml), false),
            ("user in owners roles", Some(&carol_web), false),
            ("user in owners projects", Some(&alice), false),
            ("user not in owners teams", Some(&bob_ml), false),
            ("user not in owners teams", Some(&carol_web), true),
            ("user not in owners teams", None, true),
            ("user with dev in roles", None, true),
            ("user with admin in roles", None, false),
            ("user with dev in teams", None, false),
            ("user with dev in missing", Some(&bob_ml), false),
            ("user with admin not in roles", None, true),
            ("user with dev not in roles", None, false),
            ("user with x not in missing", None, true),
            ("resource is unowned", None, true),
            ("resource is unowned", Some(&alice), false),
            ("  user   is\towner ", Some(&alice), true),
        ];
        for &(condition, owner, holds) in cases {
            let when = policy(json!([{"permit": {"actions": "read"}, "when": condition}]));
            check(&when, Some(&alice), Action::Read, "model::m", owner, holds);
            let unless = policy(json!([{"permit": {"actions": "read"}, "unless": condition}]));
            check(
                &unless,
                Some(&alice),
                Action::Read,
                "model::m",
                owner,
                !holds,
            );
            let canonical = condition.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(Condition::parse(condition).unwrap().to_string(), canonical);
        }
    }

    #[test]
    fn when_needs_all_and_resource_unless_needs_not_all() {
        // Llama Stack's test_permit_unless.
        let p = policy(json!([{
            "permit": {"principal": "user-1", "actions": ["read"], "resource": "model::*"},
            "unless": ["user not in owners namespaces", "user in owners teams"],
        }]));
        let owner = user(
            "testuser",
            &[("namespaces", &["foo"]), ("teams", &["ml-team"])],
        );
        let cases: &[(User, bool)] = &[
            (
                user(
                    "user-1",
                    &[("namespaces", &["foo"]), ("teams", &["ml-team"])],
                ),
                true,
            ),
            (
                user(
                    "user-1",
                    &[("namespaces", &["bar"]), ("teams", &["ml-team"])],
                ),
                false,
            ),
            (
                user("user-1", &[("namespaces", &["bar"]), ("teams", &["other"])]),
                true,
            ),
            (user("user-2", &[("namespaces", &["foo"])]), false),
        ];
        for (who, allowed) in cases {
            check(
                &p,
                Some(who),
                Action::Read,
                "model::mymodel",
                Some(&owner),
                *allowed,
            );
        }

        let p = policy(json!([{
            "permit": {"actions": ["read"]},
            "when": ["user with dev in roles", "user in owners teams"],
        }]));
        let cases: &[(User, bool)] = &[
            (
                user("a", &[("roles", &["dev"]), ("teams", &["ml-team"])]),
                true,
            ),
            (user("b", &[("roles", &["dev"])]), false),
            (user("c", &[("teams", &["ml-team"])]), false),
        ];
        for (who, allowed) in cases {
            check(
                &p,
                Some(who),
                Action::Read,
                "model::m",
                Some(&owner),
                *allowed,
            );
        }
    }

    #[test]
    fn default_policy_shares_by_owner_and_attributes() {
        let owner = user(
            "owner",
            &[
                ("roles", &["r1"]),
                ("teams", &["t1"]),
                ("projects", &["p1"]),
                ("namespaces", &["n1"]),
                ("groups", &["g1"]),
            ],
        );
        let no_attrs = user("testuser", &[]);
        let admin = user("testuser", &[("roles", &["admin"])]);
        let data_scientist = user(
            "testuser",
            &[
                ("roles", &["data-scientist", "researcher"]),
                ("teams", &["ml-team"]),
            ],
        );
        // (who, owner, allowed)
        let cases: &[(User, Option<&User>, bool)] = &[
            (user("owner", &[]), Some(&owner), true),
            (user("x", &[("roles", &["r1"])]), Some(&owner), true),
            (user("x", &[("teams", &["t1", "t2"])]), Some(&owner), true),
            (user("x", &[("projects", &["p1"])]), Some(&owner), true),
            (user("x", &[("namespaces", &["n1"])]), Some(&owner), true),
            (user("x", &[("groups", &["g1"])]), Some(&owner), false),
            (user("x", &[("roles", &["t1"])]), Some(&owner), false),
            (user("x", &[("roles", &["r2"])]), Some(&owner), false),
            (user("x", &[]), Some(&owner), false),
            (user("x", &[]), None, true),
            (user("x", &[("roles", &["anything"])]), None, true),
            (
                user("differentuser", &[("roles", &[])]),
                Some(&no_attrs),
                false,
            ),
            (
                user(
                    "test-user",
                    &[("roles", &["admin"]), ("teams", &["management"])],
                ),
                Some(&admin),
                true,
            ),
            (
                user(
                    "test-user",
                    &[("roles", &["admin"]), ("teams", &["management"])],
                ),
                Some(&data_scientist),
                false,
            ),
            (
                user(
                    "test-user",
                    &[("roles", &["data-scientist"]), ("teams", &["ml-team"])],
                ),
                Some(&data_scientist),
                true,
            ),
            (
                user(
                    "test-user",
                    &[("roles", &["user"]), ("teams", &["other-team"])],
                ),
                Some(&admin),
                false,
            ),
        ];
        let policies = [
            AccessPolicy::default(),
            AccessPolicy::new(Vec::new()).unwrap(),
            AccessPolicy::from_value(&serde_json::Value::Null).unwrap(),
            AccessPolicy::default_policy(),
        ];
        for p in &policies {
            assert!(p.is_default());
            for (who, owner, allowed) in cases {
                for action in Action::ALL {
                    check(
                        p,
                        Some(who),
                        action,
                        "model::ollama/llama3.2:3b",
                        *owner,
                        *allowed,
                    );
                }
            }
        }
        assert_eq!(AccessPolicy::default_policy().rules().len(), 6);
    }

    #[test]
    fn is_default_recognises_the_default_rules_in_any_order() {
        let mut rules = AccessPolicy::default_policy().rules().to_vec();
        rules.reverse();
        assert!(AccessPolicy::new(rules.clone()).unwrap().is_default());
        rules.pop();
        assert!(!AccessPolicy::new(rules.clone()).unwrap().is_default());
        rules.push(AccessRule::permit(Scope::new([Action::Read])).with_when(["user is owner"]));
        assert!(!AccessPolicy::new(rules).unwrap().is_default());
        assert!(!policy(json!([{"permit": {"actions": "read"}}])).is_default());
    }

    #[test]
    fn a_failing_condition_falls_through_to_the_next_rule() {
        let p = policy(json!([
            {"permit": {"actions": ["read"]}, "when": "user with admin in roles"},
            {"forbid": {"actions": ["read", "delete"]}, "when": "user is not owner"},
            {"permit": {"actions": ["read", "delete"]}},
        ]));
        let admin = user("admin", &[("roles", &["admin"])]);
        let bob = user("bob", &[("roles", &["user"])]);
        let cases: &[(&User, Action, Option<&User>, bool)] = &[
            (&admin, Action::Read, Some(&bob), true),
            (&admin, Action::Delete, Some(&bob), false),
            (&admin, Action::Delete, Some(&admin), true),
            (&bob, Action::Read, Some(&admin), false),
            (&bob, Action::Read, None, false),
            (&bob, Action::Read, Some(&bob), true),
            (&bob, Action::Delete, Some(&bob), true),
            (&bob, Action::Create, Some(&bob), false),
            (&admin, Action::Update, None, false),
        ];
        for &(who, action, owner, allowed) in cases {
            check(&p, Some(who), action, "vector_store::vs_1", owner, allowed);
        }
    }

    #[test]
    fn the_first_applying_rule_wins() {
        let forbid_first = policy(json!([
            {"forbid": {"actions": "delete", "resource": "model::*"}, "description": "no deletes"},
            {"permit": {"actions": ["create", "read", "update", "delete"]}},
        ]));
        let permit_first = policy(json!([
            {"permit": {"actions": ["create", "read", "update", "delete"]}},
            {"forbid": {"actions": "delete", "resource": "model::*"}},
        ]));
        let alice = user("alice", &[]);
        let cases: &[(&AccessPolicy, Action, &str, bool)] = &[
            (&forbid_first, Action::Delete, "model::m", false),
            (&forbid_first, Action::Delete, "vector_store::vs", true),
            (&forbid_first, Action::Read, "model::m", true),
            (&permit_first, Action::Delete, "model::m", true),
        ];
        for &(p, action, resource, allowed) in cases {
            check(p, Some(&alice), action, resource, None, allowed);
        }
    }

    #[test]
    fn principals_and_actions_scope_a_rule() {
        // Llama Stack's test_access_policy.
        let p = policy(json!([
            {"permit": {"principal": "user-1", "actions": ["create", "read", "delete"]},
             "description": "user-1 has full access to all models"},
            {"permit": {"principal": "user-2", "actions": ["read"], "resource": "model::test_provider/model-1"}},
            {"permit": {"principal": "user-3", "actions": "read", "resource": "model::test_provider/model-2"}},
            {"forbid": {"actions": ["create", "read", "delete"]}},
        ]));
        let u1 = user(
            "user-1",
            &[("roles", &["admin"]), ("projects", &["foo", "bar"])],
        );
        let u2 = user("user-2", &[("roles", &["user"]), ("projects", &["foo"])]);
        let u3 = user("user-3", &[("roles", &["user"]), ("projects", &["bar"])]);
        let cases: &[(&User, Action, &str, bool)] = &[
            (&u1, Action::Create, "model::test_provider/model-3", true),
            (&u1, Action::Read, "model::test_provider/model-2", true),
            (&u1, Action::Delete, "model::test_provider/model-3", true),
            (&u1, Action::Update, "model::test_provider/model-3", false),
            (&u2, Action::Read, "model::test_provider/model-1", true),
            (&u2, Action::Read, "model::test_provider/model-2", false),
            (&u2, Action::Create, "model::test_provider/model-4", false),
            (&u2, Action::Delete, "model::test_provider/model-1", false),
            (&u3, Action::Read, "model::test_provider/model-2", true),
            (&u3, Action::Read, "model::test_provider/model-1", false),
            (&u3, Action::Read, "model::test_provider/model-2x", false),
        ];
        for &(who, action, resource, allowed) in cases {
            check(&p, Some(who), action, resource, Some(&u1), allowed);
        }

        let empty_means_any = policy(json!([
            {"permit": {"principal": "", "actions": "read", "resource": ""}},
        ]));
        check(
            &empty_means_any,
            Some(&u2),
            Action::Read,
            "dataset::d",
            None,
            true,
        );
        check(
            &empty_means_any,
            Some(&u2),
            Action::Update,
            "dataset::d",
            None,
            false,
        );
        let no_actions = policy(json!([{"permit": {"actions": []}}]));
        check(
            &no_actions,
            Some(&u2),
            Action::Read,
            "dataset::d",
            None,
            false,
        );
    }

    #[test]
    fn resource_patterns() {
        // (pattern, resource, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("model::llama-3-1b", "model::llama-3-1b", true),
            ("model::llama-3-1b", "model::llama-3-1b-x", false),
            ("model::llama-3-1b", "model::llama-3-1", false),
            ("model::*", "model::ollama/llama3.2:3b", true),
            ("model::*", "shield::llama-guard", false),
            ("model::*", "modelx::a", false),
            (
                "sql_record::openai_files::*",
                "sql_record::openai_files::file-1",
                true,
            ),
            ("sql_record::*", "sql_record::openai_files::file-1", true),
            (
                "sql_record::openai_files::*",
                "sql_record::conversation_items::i-1",
                false,
            ),
            ("model*", "model::a", false),
            ("*", "model::a", false),
            ("", "model::a", true),
            ("regex:model::(llama|mistral)-.*", "model::llama-3-1b", true),
            ("regex:model::(llama|mistral)-.*", "model::mistral-7b", true),
            ("regex:model::llama-3\\.\\d+b", "model::llama-3.1b", true),
            ("regex:model::.*-\\d+b$", "model::llama-3-1b", true),
            ("regex:model::llama-3$", "model::llama-3-1b", false),
            ("regex:model::mistral-.*", "model::llama-3-1b", false),
            ("regex:model::llama", "model::llama-3-1b", true),
            ("regex:llama", "model::llama-3-1b", false),
            ("regex:a|model::b", "model::b", true),
            ("regex:a|model::b", "x::model::b", false),
            ("regex:(?x) model :: b  # comment", "model::b", true),
            ("regex:(?x) model :: b  # comment", "x::model::b", false),
            ("regex:**", "model::a", false),
            ("regex:(?P<invalid", "model::a", false),
            ("regex:[z-a]", "model::a", false),
            ("regex:model::a)(", "model::a", false),
            // Look-around is not supported by the regex engine: such a pattern never matches.
            ("regex:(?=model)model::a", "model::a", false),
        ];
        let alice = user("alice", &[]);
        for &(pattern, resource, matches) in cases {
            let p = policy(json!([{"permit": {"actions": "read", "resource": pattern}}]));
            check(&p, Some(&alice), Action::Read, resource, None, matches);
        }
        // Llama Stack's test_access_policy_with_regex.
        let p = policy(json!([
            {"permit": {"actions": ["read"], "resource": "regex:model::(llama|mistral)-.*"},
             "when": "user with developer in roles"},
            {"permit": {"actions": ["read"], "resource": "regex:model::.*-3\\.\\d+-.*"},
             "when": "user with user in roles"},
        ]));
        let dev = user("dev-user", &[("roles", &["developer"])]);
        let regular = user("regular-user", &[("roles", &["user"])]);
        let cases: &[(&User, &str, bool)] = &[
            (&dev, "model::llama-3-1b", true),
            (&dev, "model::mistral-7b", true),
            (&regular, "model::llama-3.2-8b", true),
            (&regular, "model::mistral-7b", false),
        ];
        for &(who, resource, allowed) in cases {
            check(&p, Some(who), Action::Read, resource, None, allowed);
        }
    }

    #[test]
    fn qualified_ids_compare_without_joining() {
        let r = ProtectedResource::new("model", "ollama/llama3.2:3b", None);
        let id = QualifiedId::new(&r);
        let cases: &[(&str, bool, bool)] = &[
            // (text, equals, is a prefix)
            ("model::ollama/llama3.2:3b", true, true),
            ("model::ollama/llama3.2:3", false, true),
            ("model::ollama/llama3.2:3bb", false, false),
            ("model::", false, true),
            ("model:", false, true),
            ("mod", false, true),
            ("", false, true),
            ("model:ollama", false, false),
            ("modelx", false, false),
        ];
        for &(text, equals, prefix) in cases {
            assert_eq!(id.equals(text), equals, "{text}");
            assert_eq!(id.starts_with(text), prefix, "{text}");
        }
        assert_eq!(id.joined(), "model::ollama/llama3.2:3b");
    }

    #[test]
    fn without_a_user_everything_is_allowed() {
        let forbid_all =
            policy(json!([{"forbid": {"actions": ["create", "read", "update", "delete"]}}]));
        let owner = user("owner", &[("roles", &["admin"])]);
        for p in [
            &forbid_all,
            &AccessPolicy::default(),
            &AccessPolicy::default_policy(),
        ] {
            for action in Action::ALL {
                check(p, None, action, "model::m", Some(&owner), true);
                check(p, None, action, "model::m", None, true);
            }
        }
        check(
            &forbid_all,
            Some(&owner),
            Action::Read,
            "model::m",
            Some(&owner),
            false,
        );
    }

    #[test]
    fn denials_use_llama_stacks_message() {
        let forbid_all =
            policy(json!([{"forbid": {"actions": ["create", "read", "update", "delete"]}}]));
        let cases: &[(User, Action, &str, &str, &str)] = &[
            (
                user("alice", &[("roles", &["user"]), ("teams", &["ml"])]),
                Action::Delete,
                "model",
                "openai/gpt-4o",
                "User 'alice' (attributes: roles=['user'], teams=['ml']) cannot perform action 'delete' on resource 'model::openai/gpt-4o'",
            ),
            (
                user("bob", &[]),
                Action::Read,
                "vector_store",
                "vs_1",
                "User 'bob' cannot perform action 'read' on resource 'vector_store::vs_1'",
            ),
            (
                user("carol", &[("roles", &[]), ("teams", &["it's", "a\\b", "say \"hi\" it's"])]),
                Action::Update,
                "sql_record::openai_files",
                "file-1",
                "User 'carol' (attributes: roles=[], teams=[\"it's\", 'a\\\\b', 'say \"hi\" it\\'s']) cannot perform action 'update' on resource 'sql_record::openai_files::file-1'",
            ),
        ];
        for (who, action, resource_type, identifier, message) in cases {
            let resource = ProtectedResource::new(resource_type, identifier, None);
            let e = forbid_all.check(Some(who), *action, &resource).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Forbidden);
            assert_eq!(e.http_status(), 403);
            assert_eq!(e.to_string(), *message);
            assert!(e
                .context()
                .contains(&("resource_id", resource.qualified_id())));
        }
    }

    #[test]
    fn invalid_access_rules_are_config_errors_naming_the_rule() {
        let ok = json!({"permit": {"actions": "read"}});
        let cases: &[(serde_json::Value, &str)] = &[
            (
                json!([ok, {"permit": {"actions": ["read"]}, "forbid": {"actions": ["create"]}}]),
                "access_policy[1]: permit and forbid are mutually exclusive",
            ),
            (
                json!([{"when": "user is owner", "unless": "user with admin in roles"}]),
                "access_policy[0]: one of permit or forbid is required",
            ),
            (
                json!([{"permit": {"actions": ["read"]}, "when": "user is owner", "unless": "user with admin in roles"}]),
                "access_policy[0]: when and unless are mutually exclusive",
            ),
            (
                json!([ok, ok, {"permit": {"actions": ["read"]}, "when": "user is admin"}]),
                "access_policy[2].when: unknown condition 'user is admin'",
            ),
            (
                json!([{"forbid": {"actions": "read"}, "unless": ["user is owner", "random words that are not valid"]}]),
                "access_policy[0].unless[1]: unknown condition 'random words that are not valid'",
            ),
            (
                json!([{"permit": {"actions": "read"}, "when": ["user in owner teams"]}]),
                "access_policy[0].when[0]: unknown condition 'user in owner teams'",
            ),
            (
                json!([{"permit": {"actions": "read"}, "when": [""]}]),
                "access_policy[0].when[0]: unknown condition ''",
            ),
            (
                json!([ok, {"permit": {"actions": ["read", "reed"]}}]),
                "access_policy[1].permit.actions: unknown variant `reed`, expected one of `create`, `read`, `update`, `delete`",
            ),
            (
                json!([{"permit": {"resource": "model::*"}}]),
                "access_policy[0].permit: missing field `actions`",
            ),
            (
                json!({"permit": {"actions": "read"}}),
                "access_policy: invalid type: map, expected a sequence",
            ),
        ];
        for (rules, message) in cases {
            check_config_error(AccessPolicy::from_value(rules), message);
        }
        let e = AccessPolicy::from_value(
            &json!([{"permit": {"actions": "read"}, "wehn": "user is owner"}]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().starts_with("access_policy[0]"), "{e}");
        assert!(e.message().contains("unknown field `wehn`"), "{e}");
        check_config_error(
            AccessPolicy::new(vec![
                AccessRule::permit(Scope::new([Action::Read])),
                AccessRule::forbid(Scope::new([Action::Read])).with_when(["user is admin"]),
            ]),
            "access_policy[1].when[0]: unknown condition 'user is admin'",
        );
    }

    #[test]
    fn empty_conditions_count_as_absent() {
        let p = policy(json!([{"permit": {"actions": "read"}, "when": [], "unless": ""}]));
        check(
            &p,
            Some(&user("u", &[])),
            Action::Read,
            "model::m",
            None,
            true,
        );
        let r =
            RoutePolicy::from_value(&json!([{"permit": {"paths": "*"}, "when": "", "unless": []}]))
                .unwrap();
        check_route(&r, None, "/v1/models", true);
    }

    #[test]
    fn rules_round_trip_and_have_a_schema() {
        let rules = json!([
            {"permit": {"principal": "alice", "actions": ["create", "read"], "resource": "model::*"},
             "when": "user in owners roles", "description": "text"},
            {"forbid": {"actions": "delete"}, "unless": ["user with admin in roles"]},
        ]);
        let parsed: Vec<AccessRule> = serde_json::from_value(rules.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), rules);
        let routes =
            json!([{"permit": {"paths": ["/v1/files*"]}, "when": "user with dev in roles"}]);
        let parsed: Vec<RouteRule> = serde_json::from_value(routes.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), routes);

        let schema = serde_json::to_value(schemars::schema_for!(AccessRule)).unwrap();
        for field in ["permit", "forbid", "when", "unless", "description"] {
            assert!(
                schema["properties"].get(field).is_some(),
                "{field}: {schema}"
            );
        }
        let schema = serde_json::to_value(schemars::schema_for!(RouteRule)).unwrap();
        assert!(schema["properties"].get("permit").is_some(), "{schema}");

        // Built in code, the same rules behave the same.
        let built = AccessPolicy::new(vec![AccessRule::permit(
            Scope::new([Action::Read])
                .with_principal("alice")
                .with_resource("model::*"),
        )
        .with_when(["user is owner"])
        .with_description("alice reads her models")])
        .unwrap();
        let alice = user("alice", &[]);
        check(
            &built,
            Some(&alice),
            Action::Read,
            "model::m",
            Some(&alice),
            true,
        );
        check(&built, Some(&alice), Action::Read, "model::m", None, false);
    }

    #[test]
    fn route_policy_example_from_the_docs() {
        // auth.md §5.
        let p = route_policy(json!([
            {"permit": {"paths": "/v1/chat/completions"}, "when": "user with developer in roles"},
            {"permit": {"paths": ["/v1/files*", "/v1/models*"]}},
            {"forbid": {"paths": "regex:/v1/(chat|completions).*"}, "unless": "user with admin in roles"},
            {"permit": {"paths": "*"}},
        ]));
        let dev = user("dev", &[("roles", &["developer"])]);
        let admin = user("root", &[("roles", &["admin"])]);
        let plain = user("joe", &[("roles", &["user"])]);
        let cases: &[(Option<&User>, &str, bool)] = &[
            (Some(&dev), "/v1/chat/completions", true),
            (Some(&dev), "/v1/chat/completions/", true),
            (Some(&plain), "/v1/chat/completions", false),
            (Some(&admin), "/v1/chat/completions", true),
            // Rules with conditions never apply to anonymous requests: only `*` does.
            (None, "/v1/chat/completions", true),
            (Some(&plain), "/v1/files", true),
            (Some(&plain), "/v1/files/file-1/content", true),
            (Some(&plain), "/v1/models/", true),
            (None, "/v1/models", true),
            (Some(&plain), "/v1/completions", false),
            (Some(&dev), "/v1/completions", false),
            (Some(&plain), "/v1/chat", false),
            (Some(&plain), "/x/v1/chat", true),
            (Some(&plain), "/v1/vector_stores", true),
            (Some(&plain), "/", true),
        ];
        for &(who, path, allowed) in cases {
            check_route(&p, who, path, allowed);
        }
    }

    #[test]
    fn route_patterns() {
        // (patterns, path, matches)
        let cases: &[(serde_json::Value, &str, bool)] = &[
            (json!("*"), "/v1/anything/at/all", true),
            (json!("/v1/files*"), "/v1/files", true),
            (json!("/v1/files*"), "/v1/files/abc", true),
            (json!("/v1/files*"), "/v1/filesystem", true),
            (json!("/v1/files*"), "/v1/file", false),
            (json!("/v1/models"), "/v1/models", true),
            (json!("/v1/models"), "/v1/models/", true),
            (json!("/v1/models"), "/v1/models//", false),
            (json!("/v1/models"), "/v1/models/m", false),
            (json!("/"), "/", true),
            (
                json!("regex:/v1/(chat|completions).*"),
                "/v1/chat/completions",
                true,
            ),
            (json!("regex:/v1/(chat|completions).*"), "/v2/chat", false),
            (json!("regex:/v1/models$"), "/v1/models/", true),
            (json!("regex:models"), "/v1/models", false),
            (json!("regex:["), "/v1/models", false),
            (json!(["/v1/files", "/v1/models*"]), "/v1/models/x", true),
            (json!(["/v1/files", "/v1/models*"]), "/v1/files/x", false),
            (json!([]), "/v1/files", false),
        ];
        let u = user("u", &[]);
        for (paths, path, matches) in cases {
            let p = route_policy(json!([{"permit": {"paths": paths}}]));
            check_route(&p, Some(&u), path, *matches);
            check_route(&p, None, path, *matches);
        }
    }

    #[test]
    fn route_rules_with_conditions_skip_anonymous_and_unless_means_none() {
        let cond = ["user with a in roles", "user with b in roles"];
        let resource = AccessPolicy::new(vec![
            AccessRule::permit(Scope::new([Action::Read])).with_unless(cond)
        ])
        .unwrap();
        let route = RoutePolicy::new(vec![RouteRule::permit(["*"]).with_unless(cond)]).unwrap();
        // (roles, resource rule applies: not all hold, route rule applies: none holds)
        let cases: &[(&[&str], bool, bool)] = &[
            (&[], true, true),
            (&["a"], true, false),
            (&["b"], true, false),
            (&["a", "b"], false, false),
        ];
        for &(roles, resource_allowed, route_allowed) in cases {
            let who = user("u", &[("roles", roles)]);
            check(
                &resource,
                Some(&who),
                Action::Read,
                "model::m",
                None,
                resource_allowed,
            );
            check_route(&route, Some(&who), "/v1/models", route_allowed);
        }
        check_route(&route, None, "/v1/models", false);

        let policies: &[(RoutePolicy, bool, bool)] = &[
            // (policy, anonymous allowed, user without roles allowed)
            (
                RoutePolicy::new(vec![
                    RouteRule::permit(["*"]).with_when(["user with x not in roles"])
                ])
                .unwrap(),
                false,
                true,
            ),
            (
                RoutePolicy::new(vec![
                    RouteRule::forbid(["*"]).with_unless(["user with admin in roles"]),
                    RouteRule::permit(["*"]),
                ])
                .unwrap(),
                true,
                false,
            ),
            (
                RoutePolicy::new(vec![
                    RouteRule::forbid(["*"]).with_when(["user with x not in roles"]),
                    RouteRule::permit(["*"]),
                ])
                .unwrap(),
                true,
                false,
            ),
            (
                RoutePolicy::new(vec![RouteRule::permit(["*"])]).unwrap(),
                true,
                true,
            ),
        ];
        for (p, anonymous, authenticated) in policies {
            check_route(p, None, "/v1/health", *anonymous);
            check_route(p, Some(&user("u", &[])), "/v1/health", *authenticated);
        }
    }

    #[test]
    fn route_conditions_see_an_unowned_resource() {
        let cases: &[(&str, bool)] = &[
            ("user is owner", false),
            ("user is not owner", true),
            ("user in owners roles", false),
            ("user not in owners roles", true),
            ("resource is unowned", true),
            ("user with admin in roles", true),
            ("user with admin not in roles", false),
        ];
        let admin = user("root", &[("roles", &["admin"])]);
        for &(condition, allowed) in cases {
            let p = route_policy(json!([{"permit": {"paths": "*"}, "when": condition}]));
            check_route(&p, Some(&admin), "/v1/models", allowed);
        }
    }

    #[test]
    fn empty_route_policy_allows_everything_and_denials_name_the_route() {
        for p in [
            RoutePolicy::default(),
            route_policy(json!([])),
            route_policy(serde_json::Value::Null),
        ] {
            assert!(p.is_empty());
            check_route(&p, None, "/v1/chat/completions", true);
            check_route(&p, Some(&user("u", &[])), "/anything/", true);
        }
        let p = route_policy(json!([
            {"permit": {"paths": "/v1/models*"}, "when": "user with user in roles"},
        ]));
        assert!(!p.is_empty());
        let u = user("u", &[("roles", &["user"])]);
        check_route(&p, Some(&u), "/v1/models", true);
        check_route(&p, None, "/v1/models", false);
        let cases: &[(Option<&User>, &str, &str)] = &[
            (
                Some(&u),
                "/v1/files/",
                "Access denied: insufficient permissions for route /v1/files",
            ),
            (
                None,
                "/v1/models",
                "Access denied: insufficient permissions for route /v1/models",
            ),
            (
                None,
                "/",
                "Access denied: insufficient permissions for route /",
            ),
        ];
        for &(who, path, message) in cases {
            let e = p.check(who, path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Forbidden);
            assert_eq!(e.message(), message);
        }
    }

    #[test]
    fn invalid_route_rules_are_config_errors_naming_the_rule() {
        let ok = json!({"permit": {"paths": "*"}});
        let cases: &[(serde_json::Value, &str)] = &[
            (
                json!([ok, {"permit": {"paths": "*"}, "forbid": {"paths": "/v1/files"}}]),
                "route_policy[1]: permit and forbid are mutually exclusive",
            ),
            (
                json!([{"description": "nothing"}]),
                "route_policy[0]: one of permit or forbid is required",
            ),
            (
                json!([{"permit": {"paths": "*"}, "when": "user with a in roles", "unless": "user with b in roles"}]),
                "route_policy[0]: when and unless are mutually exclusive",
            ),
            (
                json!([ok, {"forbid": {"paths": "*"}, "when": "user is admin"}]),
                "route_policy[1].when: unknown condition 'user is admin'",
            ),
            (
                json!([{"permit": {"paths": 3}}]),
                "route_policy[0].permit.paths: invalid type: integer `3`, expected a string",
            ),
            (
                json!([{"permit": {}}]),
                "route_policy[0].permit: missing field `paths`",
            ),
        ];
        for (rules, message) in cases {
            check_config_error(RoutePolicy::from_value(rules), message);
        }
    }
}
