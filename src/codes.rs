//! The catalogue of error codes: every code Baton reports, in one table,
//! with its layer, the HTTP status it answers with where it is a transport
//! answer, what it means and what to do about it.
//!
//! Each layer keeps its own error enum (`ApiError`, `ServiceError`,
//! `EngineError`, `StoreError`, `FlowError`, …), but their `code()` returns a
//! [`Code`] from this table, and so do validation issues and field errors:
//! a code that is not here does not compile, and `docs/errors.md` is
//! generated from this table by `baton schema` (a test fails when the
//! committed copy is stale). Hints here are the default advice; an error
//! that knows more (the roles that may, the current screen) gives its own.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a code comes from; one section of `docs/errors.md` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Transport,
    Admin,
    ApiKeys,
    Sessions,
    Engine,
    Fields,
    Steps,
    Store,
    FlowFiles,
    FlowValidation,
    Rules,
    FlagFiles,
    FlagEvaluation,
    ExperimentFiles,
    ExperimentStats,
    ExperimentRuns,
    Releases,
    Analytics,
    Ofrep,
}

impl Layer {
    pub const ALL: [Layer; 19] = [
        Layer::Transport,
        Layer::Admin,
        Layer::ApiKeys,
        Layer::Sessions,
        Layer::Engine,
        Layer::Fields,
        Layer::Steps,
        Layer::Store,
        Layer::FlowFiles,
        Layer::FlowValidation,
        Layer::Rules,
        Layer::FlagFiles,
        Layer::FlagEvaluation,
        Layer::ExperimentFiles,
        Layer::ExperimentStats,
        Layer::ExperimentRuns,
        Layer::Releases,
        Layer::Analytics,
        Layer::Ofrep,
    ];

    /// The section title in `docs/errors.md`.
    pub fn title(self) -> &'static str {
        match self {
            Layer::Transport => "Transport (`ApiError`, `src/api/error.rs`)",
            Layer::Admin => "Admin calls (`ApiError`; keys and roles in `src/auth.rs`)",
            Layer::ApiKeys => "API keys file (`AuthError`, `src/auth.rs`)",
            Layer::Sessions => "Sessions (`ServiceError`, `src/service/error.rs`)",
            Layer::Engine => "Engine (`EngineError`, `src/engine/error.rs`)",
            Layer::Fields => "Field errors (`screen.errors`, `src/engine/input.rs`)",
            Layer::Steps => "Backend steps at run time (step history, `src/orchestrator/`)",
            Layer::Store => "Store (`StoreError`, `src/store/error.rs`)",
            Layer::FlowFiles => {
                "Flow files (`FlowError`, `src/flow/error.rs`; `TemplateError`, `src/flow/template.rs`)"
            }
            Layer::FlowValidation => "Flow validation (`baton validate`, `src/flow/validate.rs`)",
            Layer::Rules => "Rules (`RuleError`, `src/rules/error.rs`)",
            Layer::FlagFiles => "Flag files (`FlagError`, `src/flags/error.rs`)",
            Layer::FlagEvaluation => {
                "Flag evaluation (OpenFeature error codes, `src/flags/eval.rs`)"
            }
            Layer::ExperimentFiles => {
                "Experiment files (`ExperimentError`, `src/experiments/error.rs`)"
            }
            Layer::ExperimentStats => {
                "Experiment statistics (`ExperimentError`, `src/experiments/stats.rs`)"
            }
            Layer::ExperimentRuns => {
                "Experiments at run time (`ExperimentRunError`, `src/experiments/live.rs`)"
            }
            Layer::Releases => "Flow releases (`ReleaseError`, `src/service/lifecycle.rs`)",
            Layer::Analytics => "Analytics (`AnalyticsError`, `src/service/funnel.rs`)",
            Layer::Ofrep => "OFREP (`OfrepError`, `src/api/ofrep.rs`)",
        }
    }

    /// What a reader needs to know about the whole section.
    pub fn intro(self) -> &'static str {
        match self {
            Layer::Transport => {
                "Answered before or around GraphQL execution, with the HTTP status shown. \
                 `QUERY_TOO_DEEP`, `QUERY_TOO_COMPLEX` and `QUERY_TOO_LARGE` are 400 with \
                 `application/graphql-response+json` and 200 with `application/json` (the \
                 GraphQL-over-HTTP rule for validation errors); over WebSocket they come as an \
                 `error` message. The codes that also occur as GraphQL field errors (HTTP 200 \
                 once execution began) are listed here too."
            }
            Layer::Admin => {
                "GraphQL field errors of admin calls (`X-API-Key`), HTTP 200 once execution began."
            }
            Layer::ApiKeys => {
                "`baton serve` stops at startup with one of these (code, message, hint) when the \
                 `--api-keys` file cannot be used; `baton key new` reports the name and queue \
                 codes for its arguments."
            }
            Layer::Sessions => {
                "GraphQL field errors of `startFlow`, `submit`, `back`, `session`, \
                                `sessionUpdated` and the approval and operator calls."
            }
            Layer::Engine => {
                "Raised while a session advances; shown as GraphQL field errors. Codes marked \
                 as flow defects are logged and answered with a generic message."
            }
            Layer::Fields => {
                "Not errors: after a submit that failed validation the same screen comes back \
                 with `errors { field code message }` (GraphQL data), one entry per failed input."
            }
            Layer::Steps => {
                "A failed attempt is recorded in the session's step history (`sessionSteps`) \
                 with an error; after the retries the step follows `on_error` (`on_timeout` \
                 for timeouts), else the flow's `on_error`, else the session fails with a \
                 generic error screen. `steps.<id>` then holds `{ok: false, status, body, \
                 error, attempts}`. Besides the codes below, an attempt's error is one of \
                 `connect: …` (retried; also `circuit open for …`), `timeout` (retried), \
                 `status 5xx` (retried) and `status 4xx` (not retried unless `retry_on` \
                 names it), or `template: …` (the request did not render, e.g. a missing secret)."
            }
            Layer::Store => {
                "Shown to clients only as `INTERNAL` (logged with detail), except where the \
                 service turns them into the codes above."
            }
            Layer::FlowFiles => {
                "Raised while flow files load (`baton serve`, `baton validate`, `--watch`)."
            }
            Layer::FlowValidation => {
                "Reported by `baton validate` (every problem at once, with file, line:column, \
                 JSON path and hint) and when the server loads flows. Errors stop a flow from \
                 loading; codes marked as warnings do not."
            }
            Layer::Rules => {
                "JsonLogic rules (edges' `when`, flag targeting, experiment eligibility) and \
                 `baton rule eval`."
            }
            Layer::FlagFiles => {
                "Reported by `baton validate` (for files whose top level has a `flags` member), \
                 by `baton flag eval` on stderr, and in the log at startup and on `--watch` \
                 reloads. A flag with an error is served as `PARSE_ERROR`; the other flags of \
                 the file are unaffected. On a `--watch` reload, any error keeps the last good \
                 flag set serving. Paths name the flag key, e.g. \
                 `$.flags[\"new-signup-screen\"].defaultVariant`."
            }
            Layer::FlagEvaluation => {
                "Not Rust errors: an evaluation's outcome, in `errorCode` of a resolution \
                 (`baton flag eval`, OFREP) with `reason: \"ERROR\"` and no `value`, so \
                 OpenFeature SDKs fall back to the code default. Not errors: `DISABLED` (a \
                 disabled flag) and `DEFAULT` without a `value` (no default variant) mean \
                 \"use your code default\". The status is OFREP's."
            }
            Layer::ExperimentFiles => {
                "Reported by `baton validate` for experiment files: every file in a directory \
                 named `experiments`, and elsewhere any file whose top level has both `flag` \
                 and `goals`. A server whose `--experiments` directory holds an experiment \
                 with an error does not start; the message lists them."
            }
            Layer::ExperimentStats => {
                "Raised by `analyze` on counts that cannot come from real sessions."
            }
            Layer::ExperimentRuns => {
                "From `forceVariant`, `clearForcedVariant`, `experimentResults` and `baton \
                 experiment results`."
            }
            Layer::Releases => {
                "GraphQL field errors of `saveDraft`, `publishFlow`, `setRollout`, \
                 `rollbackFlow`, `flowVersions` and `flowDiff`. A draft that fails validation is \
                 not an error: `saveDraft` answers its issues as data."
            }
            Layer::Analytics => "GraphQL field errors of `funnel` (and `baton funnel`).",
            Layer::Ofrep => {
                "Bodies are `{key?, errorCode, errorDetails, hint}` with the HTTP status shown."
            }
        }
    }
}

/// One row of the catalogue.
#[derive(Debug)]
pub struct Entry {
    pub code: Code,
    pub name: &'static str,
    pub layer: Layer,
    /// The HTTP status a transport answer carries; `None` where the code
    /// travels inside a 200 answer or is not an HTTP answer at all.
    pub status: Option<u16>,
    pub meaning: &'static str,
    pub hint: &'static str,
}

macro_rules! status {
    (_) => {
        None
    };
    ($n:literal) => {
        Some($n)
    };
}

macro_rules! catalogue {
    ($( $layer:ident { $( $variant:ident $name:literal $status:tt $meaning:literal $hint:literal ; )* } )*) => {
        /// A stable, public, UPPER_SNAKE error code. Codes never change
        /// meaning; new ones may be added.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $( $( $variant, )* )* }

        /// Every row, in documentation order.
        pub static CATALOGUE: &[Entry] = &[
            $( $( Entry {
                code: Code::$variant,
                name: $name,
                layer: Layer::$layer,
                status: status!($status),
                meaning: $meaning,
                hint: $hint,
            }, )* )*
        ];

        impl Code {
            /// The code's catalogue row.
            pub fn entry(self) -> &'static Entry {
                &CATALOGUE[self as usize]
            }
        }
    };
}

impl Code {
    /// The UPPER_SNAKE text clients see.
    pub fn as_str(self) -> &'static str {
        self.entry().name
    }

    /// The default advice for this code.
    pub fn hint(self) -> &'static str {
        self.entry().hint
    }

    /// The code with this text, if there is one.
    pub fn parse(name: &str) -> Option<Code> {
        CATALOGUE.iter().find(|e| e.name == name).map(|e| e.code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Code::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{name}`")))
    }
}

catalogue! {
    Transport {
        BadRequest "BAD_REQUEST" 400
            "not a well-formed GraphQL-over-HTTP request (bad JSON or URL parameters, no `query`, `variables` not an object, bad WebSocket upgrade)"
            "send `{\"query\": \"…\", \"variables\": {…}}` as JSON";
        BatchNotSupported "BATCH_NOT_SUPPORTED" 400
            "the body is a JSON array of operations"
            "send one operation per request";
        BodyTooLarge "BODY_TOO_LARGE" 413
            "the request body is over `--max-body-bytes` (GraphQL and OFREP)"
            "send a smaller body, or raise `--max-body-bytes`";
        HeadersTooLarge "HEADERS_TOO_LARGE" 431
            "the request's header fields add up to more than `--max-header-bytes` (every route)"
            "send fewer or shorter headers (cookies included), or raise `--max-header-bytes`";
        UnsupportedMediaType "UNSUPPORTED_MEDIA_TYPE" 415
            "POST without `Content-Type: application/json`"
            "send the body as JSON with `Content-Type: application/json`";
        NotAcceptable "NOT_ACCEPTABLE" 406
            "`Accept` allows neither `application/graphql-response+json` nor `application/json`"
            "accept `application/graphql-response+json` or `application/json`";
        MethodNotAllowed "METHOD_NOT_ALLOWED" 405
            "a mutation over GET (`Allow: POST`), a method `/graphql` does not serve, or an OFREP call that is not a POST"
            "use the method the `Allow` header names";
        QueryTooDeep "QUERY_TOO_DEEP" 400
            "the operation nests deeper than `--max-query-depth`"
            "nest selections less deeply";
        QueryTooComplex "QUERY_TOO_COMPLEX" 400
            "the operation is more complex than `--max-query-complexity`"
            "select fewer fields, or split the query into several requests";
        QueryTooLarge "QUERY_TOO_LARGE" 400
            "the document expands to more than `--max-query-fields` selections (fields, aliases and `__typename` included, fragment spreads, inline fragments; a fragment counts at every use); checked before validation, also for WebSocket subscriptions"
            "select fewer fields counting every use of a fragment, or split the query into several requests";
        RouteNotFound "ROUTE_NOT_FOUND" 404
            "no such HTTP route"
            "GraphQL is served at /graphql, the console at /console; probes at /healthz and /readyz";
        NotReady "NOT_READY" 503
            "`/readyz`: the store does not answer"
            "retry later; the server is starting or a dependency is down";
        InvalidApiKey "INVALID_API_KEY" 401
            "`X-API-Key` (or `X-API-Key` in a WebSocket `connection_init` payload) matches no key of the `--api-keys` file; refused before execution, whatever the operation"
            "send a key listed (as its SHA-256) in the server's --api-keys file, or no X-API-Key header at all";
        RateLimited "RATE_LIMITED" 429
            "over the per-address or per-session rate limit (`--rate-limit-per-address`, `--rate-limit-per-session`)"
            "wait as long as `Retry-After` says, then retry";
        Internal "INTERNAL" 500
            "anything unexpected; the detail is only in the server's log, with the request id"
            "retry later; report the x-request-id if it persists";
    }
    Admin {
        ApiKeyRequired "API_KEY_REQUIRED" _
            "an admin field without `X-API-Key`"
            "send `X-API-Key: <key>` with a key whose role may do this";
        ForbiddenRole "FORBIDDEN_ROLE" _
            "the key's role lacks the permission (a reviewer deciding another queue's approval, a viewer forcing a variant, …)"
            "use a key whose role allows it; the error's hint names those roles";
    }
    ApiKeys {
        ApiKeysUnreadable "API_KEYS_UNREADABLE" _
            "the `--api-keys` file does not exist or cannot be read"
            "check the path and the file's permissions";
        ApiKeysTooLarge "API_KEYS_TOO_LARGE" _
            "the keys file is over 1 MiB"
            "a keys file holds names, roles and hashes only";
        ApiKeysSyntax "API_KEYS_SYNTAX" _
            "the keys file is not valid YAML / JSON"
            "fix the syntax at the position shown";
        ApiKeysInvalid "API_KEYS_INVALID" _
            "not `keys:` with entries of `name`, `role` (viewer, editor, publisher, reviewer, admin), `sha256`, optional `queues`; an unknown field (e.g. a plain `key`) or role; the path says where"
            "`baton key new --name N --role R` prints a valid entry";
        ApiKeyNameInvalid "API_KEY_NAME_INVALID" _
            "a key name that is not 1–64 letters, digits, `.`, `_`, `-`, `@` starting with a letter or digit"
            "name the key after its holder, e.g. `qa-alice`";
        ApiKeyNameDuplicate "API_KEY_NAME_DUPLICATE" _
            "two entries with one name"
            "give every key its own name";
        ApiKeySha256Invalid "API_KEY_SHA256_INVALID" _
            "`sha256` is not 64 lowercase hex digits"
            "store the key's SHA-256, never the key; `baton key new` prints it";
        ApiKeySha256Duplicate "API_KEY_SHA256_DUPLICATE" _
            "two entries with one hash"
            "make a new key for each holder with `baton key new`";
        ApiKeyQueuesNotReviewer "API_KEY_QUEUES_NOT_REVIEWER" _
            "`queues` on a role other than reviewer (admins decide every queue)"
            "remove `queues`, or make the key a reviewer";
        ApiKeyQueueInvalid "API_KEY_QUEUE_INVALID" _
            "a queue name that is not 1–64 letters, digits, `.`, `_`, `-`, `@`"
            "use the queue names the flows' approval steps use";
        IdentityConfigInvalid "IDENTITY_CONFIG_INVALID" _
            "the `--jwt-*` options do not make a usable identity check (both a secret and a JWKS, a short secret, an unreadable or empty JWKS, no audience or issuer); the server does not start"
            "give --jwt-secret (32+ bytes) or --jwt-jwks FILE, plus --jwt-audience and --jwt-issuer";
    }
    Sessions {
        FlowNotFound "FLOW_NOT_FOUND" _
            "`startFlow` names no loaded flow"
            "check `flowId`; `baton validate flows/` lists the flows that load";
        FlowVersionNotFound "FLOW_VERSION_NOT_FOUND" _
            "a session's pinned flow version is missing from the store"
            "operator: the database lost data; restore it from a backup";
        SessionNotFound "SESSION_NOT_FOUND" _
            "`submit`/`back`/`sessionUpdated`, an operator call or forcing a variant on an unknown session (`session` answers `null`)"
            "sessions are created by `startFlow`";
        Unauthenticated "UNAUTHENTICATED" 401
            "no (valid) session token, or an OFREP call without a key where keys are configured"
            "send `Authorization: Bearer <token>` with the token `startFlow` returned (OFREP: the client key)";
        Forbidden "FORBIDDEN" 403
            "the token is not this session's, or the OFREP key is not one of `--ofrep-keys`"
            "use the token `startFlow` returned for this session";
        BadUserInput "BAD_USER_INPUT" 400
            "an argument is malformed (empty or over-long user id or idempotency key, `attributes` or `values` not an object, …)"
            "fix the argument the message names";
        IdempotencyKeyReused "IDEMPOTENCY_KEY_REUSED" _
            "the idempotency key was used for a different submit on this session"
            "use a new key for each distinct submit";
        SessionBusy "SESSION_BUSY" _
            "other requests kept changing the session while this one was applied (3 optimistic retries lost)"
            "retry the request with the same idempotency key";
        MockNotAllowed "MOCK_NOT_ALLOWED" _
            "`startFlow` with `mock` on a server without `--mock`, and no key with the `editor`, `publisher` or `admin` role"
            "start the server with --mock (BATON_MOCK=1), or send an API key whose role may start mock sessions as X-API-Key";
        UnknownMockScenario "UNKNOWN_MOCK_SCENARIO" _
            "`startFlow` (or `baton validate --scenario`) names a mock scenario that no step of the flow declares; the session would otherwise run the default mocks silently"
            "use one of the scenarios the flow's steps declare under `mock.scenarios` (the error's hint lists them), or `default`";
        TaskNotFound "TASK_NOT_FOUND" _
            "`claimApprovalTask` / `completeApprovalTask` on an unknown task id"
            "list open tasks with `approvalTasks`; ids come from there";
        TaskNotOpen "TASK_NOT_OPEN" _
            "the approval was already decided, timed out, skipped or cancelled"
            "the step was decided, timed out or cancelled already; read the session";
        TaskClaimed "TASK_CLAIMED" _
            "another reviewer claimed the approval"
            "another reviewer claimed it; pick another task";
        InvalidDecision "INVALID_DECISION" _
            "the reviewer's `values` fail the approval's field rules (required, min/max, pattern, …)"
            "fill the approval's fields as the message lists them";
        UserTokenRequired "USER_TOKEN_REQUIRED" 401
            "the server binds sessions to users (`--jwt-secret` or `--jwt-jwks`) and the request sent no `X-User-Token`"
            "send the JWT your backend signed for the user as `X-User-Token` (over WebSocket: in the connection_init payload)";
        UserTokenInvalid "USER_TOKEN_INVALID" 401
            "`X-User-Token` is not a JWT this server accepts: bad signature, another audience or issuer, an unknown `kid`, another algorithm, no `sub`"
            "sign the JWT with the configured key, with `aud` = --jwt-audience, `iss` = --jwt-issuer, `sub` = the user id and an `exp`";
        UserTokenExpired "USER_TOKEN_EXPIRED" 401
            "`X-User-Token` has expired"
            "get a fresh token from your backend and send the request again";
        UserIdMismatch "USER_ID_MISMATCH" 400
            "`startFlow`'s `user.id` differs from the verified subject of `X-User-Token`"
            "leave `user.id` as the token's `sub` (the session's user comes from the token)";
    }
    Engine {
        StaleScreen "STALE_SCREEN" _
            "not raised as an error: a submit for a screen that is no longer current returns the current screen with a `STALE_SCREEN` entry (field `null`) in `screen.errors`"
            "render the current screen that came with the answer";
        UnknownAction "UNKNOWN_ACTION" _
            "the screen has no such action"
            "send one of the screen's `actions`";
        SessionEnded "SESSION_ENDED" _
            "the session is `COMPLETED`, `FAILED` or `EXPIRED`"
            "start a new session with `startFlow`";
        NoPreviousScreen "NO_PREVIOUS_SCREEN" _
            "`back` on the first screen"
            "this is the first screen of the session";
        NoMatchingEdge "NO_MATCHING_EDGE" _
            "no edge of a node matched and it has no default edge (a flow defect; `baton validate` warns `NO_DEFAULT_EDGE`)"
            "add an edge without `when` as the last edge of this node (the flow author's fix)";
        StepLimitExceeded "STEP_LIMIT_EXCEEDED" _
            "one advance passed more than `--max-steps-per-advance` nodes"
            "the flow loops through decisions without reaching a screen; `baton validate` finds such cycles";
        RuleFailed "RULE_FAILED" _
            "a rule failed at run time (logged; a flow defect)"
            "the flow author should test the rule with `baton rule eval`";
        TemplateFailed "TEMPLATE_FAILED" _
            "a template failed at run time (logged; a flow defect)"
            "the flow author should check the template against the context it reads";
        ContextTooLarge "CONTEXT_TOO_LARGE" _
            "the session context would exceed `--max-context-bytes`; nothing was stored"
            "submit fewer or shorter values";
        UnknownNode "UNKNOWN_NODE" _
            "a stored session points at a node its flow version lacks (corrupt data), or an operator's `skipStep` names a missing node"
            "name a node of the session's flow version";
        SessionWaiting "SESSION_WAITING" _
            "`back` while the session waits for a backend step"
            "wait for `sessionUpdated` (or poll `session`) until the step finishes";
        SkipAcrossSubflow "SKIP_ACROSS_SUBFLOW" _
            "`skipStep` names a node of another flow of the session's graph than the step it waits on (a subflow's node from the parent, or the reverse)"
            "skip to a node with the same prefix (the same subflow), e.g. a later node of that subflow or its end";
        SubflowNotLoaded "SUBFLOW_NOT_LOADED" _
            "a session reached a `subflow` node of a flow compiled without its children; the service always runs a session's flow with them, so this is a defect"
            "report it with the session id; the session's flow and its subflows are in the log";
        ClientUnsupported "CLIENT_UNSUPPORTED" _
            "the client's `capabilities` (or app version) fit neither the screen nor any of its fallbacks; a client is never sent a kind it did not list"
            "list every component kind the client renders in `capabilities` (omit it to mean every core kind), or update the app; the flow author can add a `fallback` this client renders";
        StepNotCurrent "STEP_NOT_CURRENT" _
            "a step result, skip or retry for a step the session is not parked on (finished already, or the session moved on)"
            "the step already finished or the session moved on; read the session";
        UnknownOutcome "UNKNOWN_OUTCOME" _
            "an approval decided with an outcome the step does not declare"
            "use one of the outcomes the approval step declares";
    }
    Fields {
        Required "REQUIRED" _
            "a required input was left empty"
            "fill in the field";
        InvalidType "INVALID_TYPE" _
            "the submitted value has the wrong JSON type for the input (a number for a text input, …)"
            "send the type the component kind takes";
        TooShort "TOO_SHORT" _
            "text shorter than `min_length`"
            "enter at least `min_length` characters";
        TooLong "TOO_LONG" _
            "text longer than `max_length`"
            "enter at most `max_length` characters";
        PatternMismatch "PATTERN_MISMATCH" _
            "text that does not match the input's `pattern`"
            "enter a value of the form the label asks for";
        InvalidEmail "INVALID_EMAIL" _
            "not an email address"
            "enter an address like name@example.com";
        InvalidNumber "INVALID_NUMBER" _
            "not a number"
            "enter a number";
        NotInteger "NOT_INTEGER" _
            "a fraction where a whole number is required"
            "enter a whole number";
        TooSmall "TOO_SMALL" _
            "a number below `min`"
            "enter a number of at least `min`";
        TooLarge "TOO_LARGE" _
            "a number above `max`"
            "enter a number of at most `max`";
        InvalidOption "INVALID_OPTION" _
            "a select value that is not one of its options"
            "pick one of the options";
        InvalidDate "INVALID_DATE" _
            "a date that is not `YYYY-MM-DD`: a submitted value, or a bound in a flow file (`baton validate`)"
            "write dates as YYYY-MM-DD";
        TooEarly "TOO_EARLY" _
            "a date before `min_date`"
            "pick a date on or after `min_date`";
        TooLate "TOO_LATE" _
            "a date after `max_date`"
            "pick a date on or before `max_date`";
    }
    Steps {
        HostNotAllowed "HOST_NOT_ALLOWED" _
            "an `http` step calls a host or port outside `--allow-hosts`, or (at run time) a name that resolves to a loopback, link-local, private, shared or unspecified address that no IP or range entry allows: a validation error when flows load and in `baton validate`, and at run time the call fails without being sent (not retried)"
            "add the host to --allow-hosts, or call an allowed host";
        InvalidAllowHosts "INVALID_ALLOW_HOSTS" _
            "an `--allow-hosts` entry is not a host name, an IP address, `host:port` or a CIDR range (`10.0.0.0/8`); the server does not start, `baton validate` stops"
            "write entries like `api.example.com`, `api.example.com:8443`, `127.0.0.1` or `10.0.0.0/8`, comma separated";
        InvalidUpstreamLimits "INVALID_UPSTREAM_LIMITS" _
            "an `--upstream-limits` entry is not `HOST=CONCURRENT[/PER_SECOND]` with whole numbers, or names a host twice; the server does not start"
            "write entries like `api.example.com=8/50` or `*=32`, comma separated";
        LlmNotConfigured "LLM_NOT_CONFIGURED" _
            "an `llm` step ran on a server without `--llm-url`, or names no `model` while the server has no `--llm-model`; the step ends on `on_error` (mock sessions need neither)"
            "start the server with --llm-url (an OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1) and --llm-model, or give the step a `model`";
        InvalidLlmPrices "INVALID_LLM_PRICES" _
            "an `--llm-prices` entry is not `MODEL=PROMPT/COMPLETION` with non-negative numbers, or prices a model twice; the server does not start"
            "write entries like `gpt-4o-mini=0.15/0.6` (USD per million tokens), comma separated";
        LlmAnswerInvalid "LLM_ANSWER_INVALID" _
            "an `llm` step's answer still did not match its `schema` after `repair` tries; the step ends on `on_error`, with the last answer and its validation errors at `steps.<id>`"
            "make the prompt say what the schema wants, allow more `repair`, or loosen the schema";
        NatsSubjectsOverlap "NATS_SUBJECTS_OVERLAP" _
            "`--nats-events-subject` and `--nats-subject` (the event feed's) are the same or one lies inside the other, so Baton would read its own feed as incoming events; the server does not start"
            "give incoming events a prefix of their own, e.g. `--nats-events-subject baton.inbound`";
        ResponseTooLarge "RESPONSE_TOO_LARGE" _
            "an upstream's response body is over 256 KiB (not retried)"
            "have the upstream answer with less, or page it";
    }
    Store {
        StoreBadUrl "STORE_BAD_URL" _
            "the database URL is malformed or has an unsupported scheme"
            "use sqlite://path/to/baton.db or postgres://user@host:5432/dbname";
        StoreUnavailable "STORE_UNAVAILABLE" _
            "cannot connect, pool timeout, database busy or read-only"
            "check that the database is running and that the URL is right, then retry";
        StorageFull "STORAGE_FULL" _
            "the database's disk is full (SQLite's FULL, PostgreSQL's disk_full): nothing of the request was stored, reads still work, and writes work again once space is freed"
            "free space on the database's volume, then retry with the same idempotency key";
        StoreMigrationFailed "STORE_MIGRATION_FAILED" _
            "migrations failed or do not match the database"
            "run the Baton version that last migrated this database, or use a fresh database";
        StoreConflict "STORE_CONFLICT" _
            "optimistic concurrency: the session moved on (retried by the service)"
            "reload the session and retry";
        IdempotencyKeyTaken "IDEMPOTENCY_KEY_TAKEN" _
            "the idempotency key is already stored (the service replays the stored answer)"
            "send a new key for a new request";
        StoreNotFound "STORE_NOT_FOUND" _
            "a commit on a missing session, or a session on a missing flow version"
            "check that the object exists";
        SessionExists "SESSION_EXISTS" _
            "a duplicate session id"
            "session ids must be unique";
        TaskAlreadyFinished "TASK_ALREADY_FINISHED" _
            "a backend-step task was finished by someone else first (another worker, a reviewer, an event, an operator); nothing was written — this is how a session advances exactly once per step"
            "the step was completed by someone else first; read the session";
        StoreCorrupt "STORE_CORRUPT" _
            "a stored row does not decode"
            "stored data could not be read back; this needs an operator";
        StoreInvalidInput "STORE_INVALID_INPUT" _
            "a store call with impossible arguments (a Baton bug)"
            "report it with the log line";
        StoreInternal "STORE_INTERNAL" _
            "any other database failure"
            "see the server log for the driver's message";
    }
    FlowFiles {
        FlowDirUnreadable "FLOW_DIR_UNREADABLE" _
            "the flows directory cannot be read"
            "check that the flows directory exists and is readable";
        FlowFileUnreadable "FLOW_FILE_UNREADABLE" _
            "no such file, an I/O error, or the file is not UTF-8"
            "check the path, the file's permissions and that it is UTF-8 text";
        FlowFileTooLarge "FLOW_FILE_TOO_LARGE" _
            "a flow file over 1 MiB"
            "split the flow into smaller flows";
        FlowUnsupportedFormat "FLOW_UNSUPPORTED_FORMAT" _
            "not `.yaml`, `.yml` or `.json`"
            "name flow files *.yaml, *.yml or *.json";
        FlowSyntax "FLOW_SYNTAX" _
            "a YAML/JSON syntax error (line and column in the message)"
            "fix the syntax at the position shown";
        FlowStructure "FLOW_STRUCTURE" _
            "not a flow: a wrong or unknown field, with its JSON path"
            "compare the file with schema/flow.schema.json (point your editor at it)";
        FlowTooManyNodes "FLOW_TOO_MANY_NODES" _
            "more than 1000 nodes"
            "split the flow";
        FlowDuplicateId "FLOW_DUPLICATE_ID" _
            "two files declare the same flow id"
            "give every flow file its own `id`";
        FlowInvalid "FLOW_INVALID" _
            "validation found errors (wraps the issues)"
            "run `baton validate` on the file for every issue with its position";
        FlowCompileFailed "FLOW_COMPILE_FAILED" _
            "a validated flow did not compile (a Baton defect)"
            "report it with the flow file";
        TemplateSyntax "TEMPLATE_SYNTAX" _
            "a string is not a valid template"
            "templates use minijinja (Jinja2) syntax: `{{ user.attributes.name }}`; write `{{ '{{' }}` for a literal `{{`";
        TemplateTooLarge "TEMPLATE_TOO_LARGE" _
            "template source over 64 KiB"
            "keep user-facing strings short; put long content in a markdown component";
        TemplateRender "TEMPLATE_RENDER" _
            "a template failed while rendering (unknown filter, type error, `include`)"
            "check the filters, functions and operators the template uses";
        TemplateOutOfFuel "TEMPLATE_OUT_OF_FUEL" _
            "a template ran too long (bounded loops)"
            "avoid large or nested loops in templates";
        TemplateOutputTooLarge "TEMPLATE_OUTPUT_TOO_LARGE" _
            "rendered output over 64 KiB"
            "render less text; long content belongs in a markdown component";
    }
    FlowValidation {
        InvalidFlowId "INVALID_FLOW_ID" _
            "the flow id is not `^[a-z0-9][a-z0-9_-]*$`"
            "use lowercase letters, digits, `_` and `-`";
        InvalidId "INVALID_ID" _
            "a node, action or component id is empty or not `[A-Za-z0-9_-]`"
            "use letters, digits, `_` and `-`";
        UnknownStart "UNKNOWN_START" _
            "`start` names no node"
            "set `start` to the id of the first node";
        UnknownTarget "UNKNOWN_TARGET" _
            "an edge goes to a missing node (with a \"did you mean\")"
            "point `to` at a node id of this flow";
        NoEdges "NO_EDGES" _
            "`next: []`"
            "give the node at least one edge";
        DuplicateNodeId "DUPLICATE_NODE_ID" _
            "two nodes with one id"
            "give every node its own id";
        DuplicateActionId "DUPLICATE_ACTION_ID" _
            "two actions of a screen with one id"
            "give every action of a screen its own id";
        DuplicateComponentId "DUPLICATE_COMPONENT_ID" _
            "two components of a screen with one id"
            "give every component of a screen its own id";
        InvalidLogId "INVALID_LOG_ID" _
            "a `log_id` is empty, longer than 128 characters, or not `[A-Za-z0-9_.:/-]`"
            "use a stable dotted name such as `checkout.address.submit`";
        DuplicateLogId "DUPLICATE_LOG_ID" _
            "two screens, or two actions, have one analytics id (set or by default)"
            "give each screen and each action its own `log_id`, or drop the one that repeats a default";
        DeadEndScreen "DEAD_END_SCREEN" _
            "a screen has no actions (only `end` may be terminal)"
            "add an action, or make the node an `end`";
        InvalidRule "INVALID_RULE" _
            "a `when` rule does not compile"
            "rules are JsonLogic objects such as {\"==\": [{\"var\": \"input.s.f\"}, \"x\"]}; try them with `baton rule eval`";
        InvalidTemplate "INVALID_TEMPLATE" _
            "a string does not compile as a template"
            "templates use minijinja (Jinja2) syntax";
        EmptyText "EMPTY_TEXT" _
            "a localized text has no locales"
            "give at least an `en` text";
        UnknownContextRoot "UNKNOWN_CONTEXT_ROOT" _
            "a template or rule reads a root that is not `user`, `client`, `input`, `steps`, `flags`, `experiments` or `session`"
            "read one of the context roots the README lists";
        UnknownStep "UNKNOWN_STEP" _
            "`steps.<id>` names no backend step"
            "name a backend step node of this flow";
        SecretOutsideHttp "SECRET_OUTSIDE_HTTP" _
            "`secrets.NAME` read anywhere but an `http` step's `url`, `headers` or `body` (secrets never reach screens, rules or the context)"
            "use secrets only in http steps' url, headers and body";
        InvalidSecretRef "INVALID_SECRET_REF" _
            "`secrets` without a name"
            "write `secrets.NAME`, read from BATON_SECRET_NAME";
        InvalidStepUrl "INVALID_STEP_URL" _
            "an `http` URL that is not `http(s)://host…` with a literal scheme and host (templates only in the path and query)"
            "write the scheme and host literally; templates may fill the path and query";
        InvalidHeader "INVALID_HEADER" _
            "an `http` header name that is not letters, digits, `-`, `_`"
            "use a plain header name such as `X-Request-Id`";
        InvalidRetry "INVALID_RETRY" _
            "`max_attempts` outside 1–100, or an unknown `retry_on` condition (`connect`, `timeout`, `5xx`, `4xx`, or a status code)"
            "see the retry settings in the README's Backend steps";
        HedgeNotIdempotent "HEDGE_NOT_IDEMPOTENT" _
            "an `http` step with `hedge` uses POST or PATCH: a hedge sends the request a second time, which only an idempotent method allows"
            "hedge only GET, PUT or DELETE calls, or remove `hedge`";
        InvalidDuration "INVALID_DURATION" _
            "a duration (`timeout`, `delay`, `due`, …) that is not like `500ms`, `30s`, `48h`, or is zero"
            "write durations like 500ms, 30s, 48h";
        InvalidMock "INVALID_MOCK" _
            "a mock status outside 100–599, a mock approval outcome the step does not declare, or a mock `llm` answer that does not match the step's `schema`"
            "use a real HTTP status, one of the step's outcomes, or an answer the schema accepts";
        InvalidAnswerSchema "INVALID_ANSWER_SCHEMA" _
            "an `llm` step's `schema` is not a JSON Schema (draft 2020-12 unless it says `$schema`), or refers to another file or a URL, which Baton does not fetch"
            "write the schema inline, e.g. `{type: object, properties: {summary: {type: string}}, required: [summary]}`";
        InvalidLlm "INVALID_LLM" _
            "an `llm` step's `temperature` is outside 0–2"
            "use 0 for the most repeatable answers";
        UnusedReview "UNUSED_REVIEW" _
            "an `llm` step has `review` but no `judge`, so nothing ever takes the review edge (a warning)"
            "add a `judge`, or remove `review`";
        UnknownSubflow "UNKNOWN_SUBFLOW" _
            "a `subflow` step runs a flow that is neither loaded nor published, or `flow` is not a flow id"
            "load or publish the child flow first, or fix the id (`baton validate` lists the flows it knows)";
        SubflowCycle "SUBFLOW_CYCLE" _
            "a `subflow` step runs its own flow, or flows run each other in a cycle (`a` runs `b` runs `a`), or subflows nest deeper than 8"
            "break the cycle: a child flow must not run any flow above it";
        InvalidWait "INVALID_WAIT" _
            "a `wait` without exactly one of `duration` and `until`"
            "give either `duration` or `until`";
        EmptyParallel "EMPTY_PARALLEL" _
            "a `parallel` step without branches"
            "give the step at least one branch";
        InvalidOutcome "INVALID_OUTCOME" _
            "an approval outcome name that is not an id, or `timeout` (reserved for `on_timeout`)"
            "name outcomes with letters, digits, `_` and `-`; use `on_timeout` for timeouts";
        InvalidEventName "INVALID_EVENT_NAME" _
            "an `event` step's `event` empty or over 200 characters"
            "name the event, e.g. `payment.settled`";
        UnknownContextField "UNKNOWN_CONTEXT_FIELD" _
            "a template or rule reads a member `user`, `client` or `session` does not have (`user.atributes`)"
            "read a member the README's context table lists";
        UnknownInputScreen "UNKNOWN_INPUT_SCREEN" _
            "`input.<screen>.<field>` names a missing screen"
            "name a screen of this flow";
        UnknownInputField "UNKNOWN_INPUT_FIELD" _
            "`input.<screen>.<field>` names an input the screen does not have"
            "name an input component of that screen";
        InputWithoutSubmit "INPUT_WITHOUT_SUBMIT" _
            "a screen with inputs but no action with `validate: true`"
            "mark the action that submits the inputs with `validate: true`";
        UnknownButtonAction "UNKNOWN_BUTTON_ACTION" _
            "a button names an undeclared action"
            "declare the action in the screen's `actions`";
        DecisionCycle "DECISION_CYCLE" _
            "decisions (and transforms, which also run inline) that can loop without passing a screen or a step that waits (lists the cycle)"
            "route the loop through a screen or a waiting step";
        InvalidPattern "INVALID_PATTERN" _
            "`pattern` is not a valid regular expression"
            "write the pattern in Rust regex syntax";
        InvalidLengthRange "INVALID_LENGTH_RANGE" _
            "`min_length` greater than `max_length`"
            "swap or fix the bounds";
        InvalidNumberRange "INVALID_NUMBER_RANGE" _
            "`min` greater than `max`"
            "swap or fix the bounds";
        InvalidDateRange "INVALID_DATE_RANGE" _
            "`min_date` after `max_date`"
            "swap or fix the bounds";
        InvalidHeadingLevel "INVALID_HEADING_LEVEL" _
            "a heading level outside 1–6"
            "use a level from 1 to 6";
        EmptySelect "EMPTY_SELECT" _
            "a select without options"
            "give the select its options";
        DuplicateOptionValue "DUPLICATE_OPTION_VALUE" _
            "a select with a repeated option value"
            "give every option its own value";
        MissingFallback "MISSING_FALLBACK" _
            "a custom component or `min_app_version` without a `fallback`"
            "declare a `fallback` for clients that cannot render it";
        FallbackNotCore "FALLBACK_NOT_CORE" _
            "the last fallback uses a custom component"
            "make the last fallback of the list out of core components only";
        InvalidAppVersion "INVALID_APP_VERSION" _
            "a screen's or component's `min_app_version` is not a version"
            "write versions like 6.1 or 6.1.2";
        NotARule "NOT_A_RULE" _
            "a `when` or `visible_when` is a string, number, list or null: JsonLogic reads it as a constant, so it always (or never) matches"
            "write the rule as a JsonLogic object, e.g. {\"==\": [{\"var\": \"input.s.f\"}, \"x\"]}; `true`/`false` mean always/never";
        UnknownFlag "UNKNOWN_FLAG" _
            "`flags.<key>` names no flag of the `--flags` directory"
            "define the flag in the flag files, or fix the key (the message suggests one)";
        FlagTypeMismatch "FLAG_TYPE_MISMATCH" _
            "a rule compares a flag with a literal of a type none of its variants has"
            "compare with a value of the flag variants' type";
        CustomInputMismatch "CUSTOM_INPUT_MISMATCH" _
            "a fallback's inputs differ in name or kind from what the screen (core inputs and custom components' declared `inputs`) submits"
            "give the fallback the same inputs, so its values validate alike";
        InvalidCustomInput "INVALID_CUSTOM_INPUT" _
            "a custom input's `min`/`max`/`pattern`/`options` do not fit its `type`"
            "use constraints that fit the input's type";
        UnreachableNode "UNREACHABLE_NODE" _
            "warning: no path from `start` reaches the node"
            "connect the node or remove it";
        NoPathToEnd "NO_PATH_TO_END" _
            "warning: no `end` is reachable from the node"
            "add an edge towards an `end`";
        NoDefaultEdge "NO_DEFAULT_EDGE" _
            "warning: every edge has a `when`: a session can get stuck (`NO_MATCHING_EDGE`)"
            "add an edge without `when` as the last edge";
        UnreachableEdge "UNREACHABLE_EDGE" _
            "warning: an edge after an unconditional one"
            "move the unconditional edge last";
        UnusedTimeoutEdge "UNUSED_TIMEOUT_EDGE" _
            "warning: `on_timeout` on an approval without `due` or an event step without `timeout`"
            "set `due` / `timeout`, or remove `on_timeout`";
        UnusedFallback "UNUSED_FALLBACK" _
            "warning: a fallback no client can receive"
            "remove the fallback";
        FallbackInputMismatch "FALLBACK_INPUT_MISMATCH" _
            "warning: the fallback's inputs differ in type from the screen's"
            "give the fallback the same inputs, so its values validate alike";
        FallbackMissingInput "FALLBACK_MISSING_INPUT" _
            "warning: the fallback lacks an input the screen has"
            "give the fallback the same inputs, so its values validate alike";
    }
    Rules {
        RuleTooDeep "RULE_TOO_DEEP" _
            "a rule nests deeper than the limit"
            "flatten the rule: combine conditions in one `and`/`or` list instead of nesting them";
        RuleTooLarge "RULE_TOO_LARGE" _
            "a rule has more nodes than the limit"
            "split the rule, or move large literal lists into the context and test them with `in`";
        RuleUnknownOperator "RULE_UNKNOWN_OPERATOR" _
            "an operator that is neither JsonLogic's nor flagd's"
            "use the operators of jsonlogic.com plus sem_ver, starts_with, ends_with, fractional";
        RuleInvalid "RULE_INVALID" _
            "an operator with arguments of the wrong number or shape"
            "check the operator's arguments against jsonlogic.com/operations.html";
        RuleEvalFailed "RULE_EVAL_FAILED" _
            "a rule failed while evaluating"
            "check the data the rule reads; `baton rule eval` shows it";
        RuleDataInvalid "RULE_DATA_INVALID" _
            "the data a rule is evaluated against is not usable"
            "send a JSON object as the data";
        RuleLineNotJson "RULE_LINE_NOT_JSON" _
            "`baton rule eval`: a line is not JSON"
            "send one JSON object per line";
        RuleLineMissingRule "RULE_LINE_MISSING_RULE" _
            "`baton rule eval`: a line has no `\"rule\"`"
            "send {\"rule\": …, \"data\": …} per line";
    }
    FlagFiles {
        FlagDirUnreadable "FLAG_DIR_UNREADABLE" _
            "the flag directory cannot be read (`baton flag eval`; a missing `--flags` directory when serving is just \"no flags\")"
            "check that the flags directory exists and is readable";
        FlagFileUnreadable "FLAG_FILE_UNREADABLE" _
            "an I/O error, or the file is not UTF-8"
            "check the file's permissions and that it is UTF-8 text";
        FlagFileTooLarge "FLAG_FILE_TOO_LARGE" _
            "a flag file over 4 MiB"
            "split the flags over several files";
        FlagFileSyntax "FLAG_FILE_SYNTAX" _
            "a JSON/YAML syntax error (line and column in the message)"
            "fix the syntax at the position shown";
        FlagFileInvalid "FLAG_FILE_INVALID" _
            "not a flag definition: no `flags` object, or `$evaluators` not an object"
            "a flag file is {\"flags\": {…}} in flagd's format";
        FlagFieldInvalid "FLAG_FIELD_INVALID" _
            "a flag is not an object, or its key is empty"
            "each flag is an object under its key";
        FlagStateInvalid "FLAG_STATE_INVALID" _
            "`state` missing or not `ENABLED`/`DISABLED`"
            "set `state` to ENABLED or DISABLED";
        FlagVariantsInvalid "FLAG_VARIANTS_INVALID" _
            "`variants` missing, empty, not an object, or a variant is `null`/an array"
            "give `variants` as an object of names to values";
        FlagVariantTypesMixed "FLAG_VARIANT_TYPES_MIXED" _
            "variants of one flag have different types"
            "give every variant of a flag the same type";
        FlagDefaultVariantUnknown "FLAG_DEFAULT_VARIANT_UNKNOWN" _
            "`defaultVariant` names no variant"
            "name one of the variants, or use null for the app's code default";
        FlagMetadataInvalid "FLAG_METADATA_INVALID" _
            "`metadata` not an object, or a value that is not a string, number or boolean"
            "keep metadata flat: strings, numbers and booleans";
        FlagEvaluatorInvalid "FLAG_EVALUATOR_INVALID" _
            "an entry of `$evaluators` is not a non-empty JsonLogic object"
            "each evaluator is a JsonLogic rule";
        FlagRefUnknown "FLAG_REF_UNKNOWN" _
            "`{\"$ref\": name}` names no evaluator of the file (flagd answers `PARSE_ERROR` for it too)"
            "define the evaluator under `$evaluators` in the same file";
        FlagRefCycle "FLAG_REF_CYCLE" _
            "evaluators refer to each other in a loop"
            "an evaluator must not refer back to itself";
        FlagTargetingInvalid "FLAG_TARGETING_INVALID" _
            "targeting does not compile (the rule's own code, e.g. `RULE_UNKNOWN_OPERATOR`, is in the message; the path points into the rule)"
            "fix the rule at the path shown; try it with `baton rule eval`";
        FlagKeyDuplicate "FLAG_KEY_DUPLICATE" _
            "a flag key defined in an earlier file; the first definition is kept"
            "define each flag once across the directory";
        FlagFieldUnknown "FLAG_FIELD_UNKNOWN" _
            "warning: a member flagd does not define (often a typo such as `defaultvariant`)"
            "check the spelling against flagd's flag-definition format";
        FlagTargetingUnknownVariant "FLAG_TARGETING_UNKNOWN_VARIANT" _
            "warning: a branch of `if` or a `fractional` bucket returns a literal that names no variant (evaluates to `GENERAL`)"
            "return one of the flag's variant names";
        FlagContextInvalid "FLAG_CONTEXT_INVALID" _
            "an evaluation context that is not a JSON object"
            "send the context as a JSON object";
        FlagLineNotJson "FLAG_LINE_NOT_JSON" _
            "`baton flag eval`: a line is not JSON"
            "send one JSON object per line";
        FlagLineMissingFlag "FLAG_LINE_MISSING_FLAG" _
            "`baton flag eval`: a line has no string `\"flag\"`"
            "send {\"flag\": KEY, \"context\": {…}} per line";
        FlagLineTypeInvalid "FLAG_LINE_TYPE_INVALID" _
            "`baton flag eval`: `\"type\"` is not `boolean`, `string`, `integer`, `float`, `number` or `object`"
            "use one of the types listed";
    }
    FlagEvaluation {
        FlagNotFound "FLAG_NOT_FOUND" 404
            "no flag with that key"
            "check the key against the flag files";
        TypeMismatch "TYPE_MISMATCH" _
            "`baton flag eval` with `\"type\"`: the value is not of that type (`integer` accepts whole numbers only)"
            "ask for the type the flag's variants have";
        ParseError "PARSE_ERROR" 400
            "the flag failed validation, or its targeting failed while running"
            "run `baton validate` on the flag files";
        General "GENERAL" 400
            "targeting returned something that names no variant"
            "make every targeting branch return a variant name";
    }
    ExperimentFiles {
        ExperimentDirUnreadable "EXPERIMENT_DIR_UNREADABLE" _
            "the experiments directory cannot be read"
            "check that the experiments directory exists and is readable";
        ExperimentFileUnreadable "EXPERIMENT_FILE_UNREADABLE" _
            "an I/O error, or the file is not UTF-8"
            "check the file's permissions and that it is UTF-8 text";
        ExperimentFileTooLarge "EXPERIMENT_FILE_TOO_LARGE" _
            "an experiment file over 256 KiB"
            "one experiment per file";
        ExperimentFileSyntax "EXPERIMENT_FILE_SYNTAX" _
            "a JSON/YAML syntax error (line and column in the message)"
            "fix the syntax at the position shown";
        ExperimentStructure "EXPERIMENT_STRUCTURE" _
            "a missing or unknown field, or a value of the wrong type (path to it)"
            "compare with experiments/onboarding-headline.yaml";
        ExperimentIdInvalid "EXPERIMENT_ID_INVALID" _
            "`id` is not `^[a-z0-9][a-z0-9_-]*$`"
            "use lowercase letters, digits, `_` and `-`";
        ExperimentIdDuplicate "EXPERIMENT_ID_DUPLICATE" _
            "an earlier file defines the same `id`"
            "give every experiment its own id";
        ExperimentFlagUnknown "EXPERIMENT_FLAG_UNKNOWN" _
            "`flag` names no flag"
            "name a flag of the flag files";
        ExperimentControlUnknown "EXPERIMENT_CONTROL_UNKNOWN" _
            "`control` is not a variant of the flag"
            "name one of the flag's variants";
        ExperimentFlagNotRandomized "EXPERIMENT_FLAG_NOT_RANDOMIZED" _
            "warning: the flag's targeting has no `fractional` (or more than one), so its arms are not one random split"
            "split the arms with one `fractional` in the flag's targeting";
        ExperimentRuleInvalid "EXPERIMENT_RULE_INVALID" _
            "`eligible` does not compile (the rule's own code is in the message)"
            "fix the rule; try it with `baton rule eval`";
        ExperimentTimestampInvalid "EXPERIMENT_TIMESTAMP_INVALID" _
            "`start` or `stop` is not an RFC 3339 timestamp with a time zone"
            "write times like 2026-12-01T09:00:00Z";
        ExperimentStopBeforeStart "EXPERIMENT_STOP_BEFORE_START" _
            "`stop` is not after `start`"
            "move `stop` after `start`";
        ExperimentGoalsEmpty "EXPERIMENT_GOALS_EMPTY" _
            "`goals: []`"
            "name at least one goal node";
        ExperimentGoalNodeUnknown "EXPERIMENT_GOAL_NODE_UNKNOWN" _
            "a goal names a node its flow does not have (the experiment could never convert)"
            "name a node of that flow";
        ExperimentGoalFlowUnknown "EXPERIMENT_GOAL_FLOW_UNKNOWN" _
            "warning: a goal names a flow that is not among the flows checked"
            "check the flow id, or validate the flows along with the experiment";
        ExperimentRangeOutOfBounds "EXPERIMENT_RANGE_OUT_OF_BOUNDS" _
            "a namespace range bound outside 0..=100 (percent)"
            "use bounds from 0 to 100";
        ExperimentRangeEmpty "EXPERIMENT_RANGE_EMPTY" _
            "a namespace range `[from, to)` with `from >= to`"
            "make `from` smaller than `to`";
        ExperimentNamespaceOverlap "EXPERIMENT_NAMESPACE_OVERLAP" _
            "two experiments of one namespace have overlapping ranges (`[0, 50)` and `[50, 100)` do not overlap)"
            "give the experiments disjoint ranges";
    }
    ExperimentStats {
        StatsConversionsExceedExposures "STATS_CONVERSIONS_EXCEED_EXPOSURES" _
            "an arm has more conversions than exposures"
            "count each session's conversion once, and only for exposed sessions";
        StatsArmDuplicate "STATS_ARM_DUPLICATE" _
            "two count rows for one arm"
            "sum the counts per arm first";
    }
    ExperimentRuns {
        ExperimentNotFound "EXPERIMENT_NOT_FOUND" _
            "no loaded experiment has this id"
            "the error's hint lists the loaded ones (`--experiments`)";
        ExperimentVariantUnknown "EXPERIMENT_VARIANT_UNKNOWN" _
            "the variant is not one of the experiment's flag's"
            "the error's hint lists them";
        ForceTargetInvalid "FORCE_TARGET_INVALID" _
            "not exactly one of `userId` and `sessionId`, or a user id over 200 bytes"
            "give exactly one of userId and sessionId";
    }
    Releases {
        UnknownFlowVersion "UNKNOWN_FLOW_VERSION" _
            "an admin call names a version the flow does not have (a diff, a publish, a rollout, a rollback)"
            "`flowVersions(flowId:)` lists the versions";
        FlowIdMismatch "FLOW_ID_MISMATCH" _
            "`saveDraft`: the source's `id` is not the `flowId` it is saved under"
            "save the source under its own `id`, or change the `id` in the source";
        DraftInvalid "DRAFT_INVALID" _
            "`publishFlow` of a version that fails validation today (flags or allowed hosts changed since it was saved)"
            "save a corrected draft; `saveDraft` lists every issue";
        MessageRequired "MESSAGE_REQUIRED" _
            "`publishFlow` or `rollbackFlow` with an empty `message`"
            "say why, in a sentence: it goes into the audit log";
        RolloutOutOfRange "ROLLOUT_OUT_OF_RANGE" _
            "a rollout percentage below 0 or above 100"
            "give a whole percentage from 0 to 100";
        RolloutNeedsLiveVersion "ROLLOUT_NEEDS_LIVE_VERSION" _
            "a flow's first publish below 100%: the other users would have no version"
            "publish the first version at 100 (the default)";
        VersionNotServed "VERSION_NOT_SERVED" _
            "`setRollout` on a version that is neither the live nor the rollout version"
            "publish the version first (`publishFlow` with `rolloutPercent`), or use `rollbackFlow` to make an earlier one live";
        VersionNeverPublished "VERSION_NEVER_PUBLISHED" _
            "`rollbackFlow` to a version that was never published (a draft)"
            "roll back to a version `flowVersions` shows as PUBLISHED or RETIRED, or publish the draft";
        SelfApproval "SELF_APPROVAL" _
            "with `--require-review`, the publisher who requested a publish tried to carry it out"
            "ask another publisher to call `publishFlow` for this version";
        OverrideReasonRequired "OVERRIDE_REASON_REQUIRED" _
            "`publishFlow` with an `override` that is blank"
            "say why the publish may go ahead anyway, in a sentence";
        UnknownPreviewNode "UNKNOWN_PREVIEW_NODE" _
            "`startPreview` names a node the flow version does not have"
            "use a node id of that version; the error lists them";
        UnknownPreviewArm "UNKNOWN_PREVIEW_ARM" _
            "`startPreview` names an experiment that is not loaded, or a variant its flag lacks"
            "use `{experimentId: variant}` with ids from `experiments` and variants of the experiment's flag";
        PreviewExpired "PREVIEW_EXPIRED" _
            "a call on a preview session past its expiry (24 hours after it started)"
            "start a new preview with `startPreview`";
        CohortsFileInvalid "COHORTS_FILE_INVALID" _
            "`baton serve` stops: the `--cohorts` file cannot be read or is not `cohorts:` with entries of `platform`, `app_version`, `capabilities`"
            "fix the file at the position shown; each entry is a cohort the compatibility report always lists";
        IncompatibleWithCohorts "INCOMPATIBLE_WITH_COHORTS" _
            "`publishFlow` of a version that an app cohort with recent sessions could not render"
            "read `compatibilityReport`, add fallbacks, or publish with `override` and a reason";
    }
    Analytics {
        FunnelRangeInvalid "FUNNEL_RANGE_INVALID" _
            "`funnel` with `from` not before `to`, or a time that is not RFC 3339"
            "give `from` < `to` as RFC 3339 times, e.g. 2026-12-01T00:00:00Z";
        FunnelIdleInvalid "FUNNEL_IDLE_INVALID" _
            "`funnel` with `idleMinutes` (or `baton funnel --idle-minutes`) outside 0–10080"
            "give 0 (only sessions that ended elsewhere than an `end` drop off) up to 10080 (7 days); the default is 30";
        FunnelGroupInvalid "FUNNEL_GROUP_INVALID" _
            "`funnel` grouped by `EXPERIMENT_ARM` without `experiment`, or naming an experiment that is not loaded"
            "give `experiment:` one of the ids `experiments` lists";
        FunnelTooLarge "FUNNEL_TOO_LARGE" _
            "`funnel` whose range starts or ends mid-hour with more sessions in those partial hours than `--funnel-max-logged` (default 100,000; they are read from the log)"
            "start and end the range on the hour (or leave `from`/`to` out): whole hours are read from the rollups";
        EventCursorInvalid "EVENT_CURSOR_INVALID" _
            "`eventFeed` (or `baton events tail --after`) with a cursor that is not one this store gave out"
            "pass back an `endCursor` (or an event's `cursor`) exactly as received, from the same database; without one the feed starts at its first event";
        EventFeedLimitInvalid "EVENT_FEED_LIMIT_INVALID" _
            "`eventFeed` with `first` outside 1–1000"
            "ask for 1 to 1000 events per page and follow `endCursor` for more";
        WebhooksFileInvalid "WEBHOOKS_FILE_INVALID" _
            "`baton serve` stops: the `--webhooks` file cannot be read, or an entry is wrong (name, url, a `secret_env` variable that is not set, batch, attempts, durations)"
            "fix the entry the message names; each webhook needs `name`, an http(s) `url` and `secret_env` naming a set environment variable";
        DeadLetterNotFound "DEAD_LETTER_NOT_FOUND" _
            "`replayDeadLetter` with an id that is not a dead letter"
            "take the id from `deadLetters`";
        SinkNotConfigured "SINK_NOT_CONFIGURED" _
            "`replayDeadLetter` of a dead letter whose webhook is no longer in this server's `--webhooks` file"
            "add the webhook back (same name) and restart, or leave the dead letter";
        SinkDeliveryFailed "SINK_DELIVERY_FAILED" _
            "`replayDeadLetter`: the webhook refused the batch again (no answer, or not 2xx)"
            "check that the receiver is up and accepts the signature, then replay again";
    }
    Ofrep {
        InvalidContext "INVALID_CONTEXT" 400
            "the OFREP body is not JSON, not an object, or `context` is not an object"
            "send {\"context\": {\"targetingKey\": …}}";
    }
}

/// `docs/errors.md`, generated from [`CATALOGUE`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         <!-- Generated by `baton schema` from src/codes.rs; do not edit. -->\n\n\
         Every error Baton reports carries a stable UPPER_SNAKE code: in GraphQL as\n\
         `errors[].extensions.code` with `extensions.hint`, in `baton validate` output as\n\
         `code`, in `baton rule eval` output as `error.code`. Codes never change meaning;\n\
         new ones may be added. Internal errors are logged with the request id and answered\n\
         with `INTERNAL` and the message \"internal error\" — driver messages, SQL and\n\
         secrets never reach a client. The hint shown here is the default; an error that\n\
         knows more (the roles that may, the current screen) says so in its own hint.\n",
    );
    for layer in Layer::ALL {
        let rows: Vec<&Entry> = CATALOGUE.iter().filter(|e| e.layer == layer).collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {}\n\n{}\n\n", layer.title(), layer.intro()));
        let with_status = rows.iter().any(|e| e.status.is_some());
        if with_status {
            out.push_str("| code | HTTP | meaning | what to do |\n|---|---|---|---|\n");
        } else {
            out.push_str("| code | meaning | what to do |\n|---|---|---|\n");
        }
        for e in rows {
            // A `|` inside a cell would end it.
            let cell = |text: &str| text.replace('|', "\\|");
            if with_status {
                let status = e.status.map_or("—".to_owned(), |s| s.to_string());
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    e.name,
                    status,
                    cell(e.meaning),
                    cell(e.hint)
                ));
            } else {
                out.push_str(&format!(
                    "| `{}` | {} | {} |\n",
                    e.name,
                    cell(e.meaning),
                    cell(e.hint)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_enum_order_and_names_are_unique_upper_snake() {
        let mut seen = std::collections::HashSet::new();
        for (i, e) in CATALOGUE.iter().enumerate() {
            assert_eq!(e.code as usize, i, "{} out of order", e.name);
            assert!(seen.insert(e.name), "{} twice", e.name);
            assert!(
                e.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                e.name
            );
            // The variant is the code in CamelCase, so a reader can find one from the other.
            let camel: String = e
                .name
                .split('_')
                .map(|w| w[..1].to_owned() + &w[1..].to_ascii_lowercase())
                .collect();
            assert_eq!(format!("{:?}", e.code), camel);
            assert!(!e.meaning.is_empty() && !e.hint.is_empty(), "{}", e.name);
        }
    }

    #[test]
    fn codes_serialize_as_their_text_and_back() {
        let json = serde_json::to_string(&Code::StaleScreen).unwrap();
        assert_eq!(json, "\"STALE_SCREEN\"");
        assert_eq!(
            serde_json::from_str::<Code>(&json).unwrap(),
            Code::StaleScreen
        );
        assert!(serde_json::from_str::<Code>("\"NO_SUCH_CODE\"").is_err());
    }
}
