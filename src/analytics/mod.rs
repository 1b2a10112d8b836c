//! What the session logs tell about a flow as a whole: funnels (where
//! sessions go, drop off and spend time). Pure folds over events the
//! service reads from the store.

pub mod funnel;
