//! Functions the engine knows besides DataFusion's own, registered for each statement: the
//! test-control functions `sleep(ms)` and `fail('msg')` (not Trino's; tests use them to hold a
//! query RUNNING and to fail one on purpose) and Trino's session functions `current_user`,
//! `current_catalog` and `current_schema`, which answer from the statement's session.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Longest delay a query may ask for (`sleep()` or the page-delay hint): keeps a typo from
/// parking a connection for days, and keeps `Instant + Duration` far from overflow.
pub(crate) const MAX_DELAY_MS: u64 = 3_600_000;

/// What `fail('msg')` raises: the query fails with `GENERIC_USER_ERROR` and exactly `msg`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

/// The milliseconds the `sleep()` calls of one statement asked for, in all.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slept(Arc<AtomicU64>);

impl Slept {
    pub(crate) fn millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed).min(MAX_DELAY_MS)
    }
}

/// The functions for one statement of `user` with the session's catalog and schema.
pub(crate) fn functions(
    user: &str,
    catalog: Option<&str>,
    schema: Option<&str>,
    slept: &Slept,
) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Sleep {
            slept: slept.clone(),
            signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
        }),
        ScalarUDF::new_from_impl(Fail {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        }),
        session_value("current_user", Some(user)),
        session_value("current_catalog", catalog),
        session_value("current_schema", schema),
    ]
}

fn session_value(name: &'static str, value: Option<&str>) -> ScalarUDF {
    ScalarUDF::new_from_impl(SessionValue {
        name,
        value: value.map(str::to_string),
        signature: Signature::new(TypeSignature::Nullary, Volatility::Stable),
    })
}

/// `sleep(ms)`: returns `ms` at once and adds it to the statement's [`Slept`]; the query then
/// stays RUNNING that long (see `QueryEntry::long_poll`).
#[derive(Debug)]
struct Sleep {
    slept: Slept,
    signature: Signature,
}

impl PartialEq for Sleep {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slept.0, &other.slept.0)
    }
}

impl Eq for Sleep {}

impl Hash for Sleep {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.slept.0).hash(state);
    }
}

impl ScalarUDFImpl for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        let add = |ms: i64| {
            let Ok(ms) = u64::try_from(ms) else {
                return exec_err!("sleep() needs a non-negative number of milliseconds");
            };
            self.slept
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(ms).min(MAX_DELAY_MS))
                })
                .ok();
            Ok(())
        };
        match args.args.into_iter().next() {
            Some(ColumnarValue::Scalar(ScalarValue::Int64(ms))) => {
                if let Some(ms) = ms {
                    add(ms)?;
                }
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(ms)))
            }
            Some(ColumnarValue::Array(a)) => {
                let values: &Int64Array = a.as_primitive::<Int64Type>();
                for ms in values.iter().flatten() {
                    add(ms)?;
                }
                Ok(ColumnarValue::Array(a))
            }
            _ => exec_err!("sleep() takes a number of milliseconds"),
        }
    }
}

/// `fail('msg')`: fails the query with `msg`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fail {
    signature: Signature,
}

impl ScalarUDFImpl for Fail {
    fn name(&self) -> &str {
        "fail"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        let message = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(m)))) => m.clone(),
            Some(ColumnarValue::Array(a)) => a
                .as_any()
                .downcast_ref::<StringArray>()
                .and_then(|s| s.iter().flatten().next())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        Err(DataFusionError::External(Box::new(Failed(message))))
    }
}

/// `current_user`, `current_catalog`, `current_schema`: the session's value (or NULL).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionValue {
    name: &'static str,
    value: Option<String>,
    signature: Signature,
}

impl ScalarUDFImpl for SessionValue {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(self.value.clone())))
    }
}

/// The message of a `fail()` somewhere in `e`'s chain of causes.
pub(crate) fn failed(e: &DataFusionError) -> Option<&str> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(Failed(m)) = c.downcast_ref::<Failed>() {
            return Some(m);
        }
        cause = match c.downcast_ref::<DataFusionError>() {
            Some(DataFusionError::External(inner)) => Some(inner.as_ref()),
            Some(DataFusionError::Shared(inner)) => Some(inner.as_ref()),
            _ => c.source(),
        };
    }
    None
}
