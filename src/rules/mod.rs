//! Rules: JsonLogic with jsonlogic.com semantics plus flagd's operators.
