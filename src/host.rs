//! Every call into the Envoy host, in one place. The SDK's `hostcalls` panic on statuses they do
//! not expect, and a panic aborts every stream on the worker; these wrappers speak the ABI
//! directly and turn any non-Ok status into a [`HostError`].

use std::ptr::{null, null_mut};

use switchboard_core::header_map;

/// A hostcall that did not succeed; `status` is the raw ABI status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The host answered with a status other than Ok / NotFound where that is meaningful.
    Status(u32),
    /// The host returned bytes that do not decode (a header map, a number).
    Malformed,
    /// A value too large for the ABI's 32-bit lengths.
    TooLarge,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Status(code) => write!(f, "host status {code}"),
            HostError::Malformed => f.write_str("malformed host data"),
            HostError::TooLarge => f.write_str("value too large for the host ABI"),
        }
    }
}

pub type HostResult<T> = Result<T, HostError>;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
#[allow(clippy::enum_variant_names)] // the ABI's own names for these maps
pub enum MapKind {
    RequestHeaders = 0,
    ResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum BufferKind {
    RequestBody = 0,
    ResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

fn check(status: u32) -> HostResult<()> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError::Status(status))
    }
}

/// Takes ownership of a host allocation (made through the SDK's exported allocator).
///
/// # Safety
/// `data`/`size` must come from a host call that just returned Ok with them.
unsafe fn take_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub fn log(level: LogLevel, message: &str) {
    // Nothing sensible can be done if logging itself fails.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

pub fn log_level() -> LogLevel {
    let mut level = 0u32;
    let status = unsafe { proxy_get_log_level(&mut level) };
    match (status, level) {
        (STATUS_OK, 0) => LogLevel::Trace,
        (STATUS_OK, 1) => LogLevel::Debug,
        (STATUS_OK, 2) => LogLevel::Info,
        (STATUS_OK, 3) => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
pub fn now_nanos() -> u64 {
    let mut time = 0u64;
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut time) };
    if status == STATUS_OK {
        time
    } else {
        0
    }
}

pub fn now_secs() -> u64 {
    now_nanos() / 1_000_000_000
}

pub fn plugin_configuration(size: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut returned = 0usize;
    let status = unsafe {
        proxy_get_buffer_bytes(
            BufferKind::PluginConfiguration as u32,
            0,
            size,
            &mut data,
            &mut returned,
        )
    };
    match status {
        STATUS_OK => Ok(unsafe { take_bytes(data, returned) }),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError::Status(other)),
    }
}

/// The first `size` bytes of a body buffer (the current chunk).
pub fn body(kind: BufferKind, size: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut returned = 0usize;
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, 0, size, &mut data, &mut returned) };
    match status {
        STATUS_OK => Ok(unsafe { take_bytes(data, returned) }),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError::Status(other)),
    }
}

/// `size` bytes of a body buffer from `start` (the part of a held buffer not yet read).
pub fn body_range(kind: BufferKind, start: usize, size: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut returned = 0usize;
    let status =
        unsafe { proxy_get_buffer_bytes(kind as u32, start, size, &mut data, &mut returned) };
    match status {
        STATUS_OK => Ok(unsafe { take_bytes(data, returned) }),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError::Status(other)),
    }
}

/// Makes `context_id` (a stream of this VM) the target of the next stream hostcall, e.g. from
/// the root context's tick. Fails when the stream is gone.
pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Resumes a paused direction of the effective stream: 0 request, 1 response.
pub fn resume(response: bool) -> HostResult<()> {
    check(unsafe { proxy_continue_stream(u32::from(response)) })
}

/// Replaces the first `size` bytes of a body buffer (the whole current chunk) with `bytes`.
pub fn replace_body(kind: BufferKind, size: usize, bytes: &[u8]) -> HostResult<()> {
    check(unsafe { proxy_set_buffer_bytes(kind as u32, 0, size, bytes.as_ptr(), bytes.len()) })
}

/// A fresh masking key for a frame the gateway writes (RFC 6455 §5.3: from a strong entropy
/// source). Keys come from a per-VM pool of host entropy (WASI `random_get`) refilled 64 keys at
/// a time, so a busy session does not pay a host call for every chunk.
pub fn mask_key() -> [u8; 4] {
    MASK_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.1 + 4 > pool.0.len() {
            if getrandom::fill(&mut pool.0).is_err() {
                // Without entropy a fixed key is still a valid frame; only predictability suffers.
                let clock = now_nanos().to_le_bytes();
                return [clock[0], clock[1], clock[2], clock[3]];
            }
            pool.1 = 0;
        }
        let at = pool.1;
        pool.1 += 4;
        let mut key = [0u8; 4];
        if let Some(bytes) = pool.0.get(at..at + 4) {
            key.copy_from_slice(bytes);
        }
        key
    })
}

thread_local! {
    /// Host entropy not yet handed out as masking keys, and how much of it is used.
    static MASK_POOL: std::cell::RefCell<([u8; 256], usize)> =
        const { std::cell::RefCell::new(([0; 256], 256)) };
}

pub fn header_pairs(map: MapKind) -> HostResult<Vec<(String, Vec<u8>)>> {
    let mut data = null_mut();
    let mut size = 0usize;
    check(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) })?;
    let bytes = unsafe { take_bytes(data, size) };
    header_map::decode(&bytes).ok_or(HostError::Malformed)
}

pub fn header(map: MapKind, name: &str) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        STATUS_OK => Ok(Some(unsafe { take_bytes(data, size) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError::Status(other)),
    }
}

pub fn remove_header(map: MapKind, name: &str) -> HostResult<()> {
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    match status {
        STATUS_OK | STATUS_NOT_FOUND => Ok(()),
        other => Err(HostError::Status(other)),
    }
}

pub fn set_header(map: MapKind, name: &str, value: &str) -> HostResult<()> {
    check(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Sends a local reply instead of forwarding (the stream then ends).
pub fn send_local_reply(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
    details: &str,
) -> HostResult<()> {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let serialized = header_map::encode(&pairs).ok_or(HostError::TooLarge)?;
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// A shared-data value and its CAS token; `None` when the key is absent.
pub fn shared_get(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        STATUS_OK => Ok(Some((unsafe { take_bytes(data, size) }, cas))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError::Status(other)),
    }
}

/// Outcome of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Another worker wrote first (compare-and-swap lost).
    CasMismatch,
}

/// Writes shared data; `cas` 0 writes unconditionally.
pub fn shared_set(key: &str, value: &[u8], cas: u32) -> HostResult<SharedWrite> {
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        STATUS_OK => Ok(SharedWrite::Written),
        STATUS_CAS_MISMATCH => Ok(SharedWrite::CasMismatch),
        other => Err(HostError::Status(other)),
    }
}

pub fn define_metric(kind: MetricKind, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// Starts (or changes) this root context's timer; `on_tick` follows every `period_ms`.
pub fn set_tick_period(period_ms: u64) -> HostResult<()> {
    let period = u32::try_from(period_ms).map_err(|_| HostError::TooLarge)?;
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// A host property such as `["node", "id"]`; `None` when the host has no such property.
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    // The ABI takes the path segments joined by NUL.
    let joined = path.join("\0");
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(Some(unsafe { take_bytes(data, size) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError::Status(other)),
    }
}

/// Sends an HTTP request to an Envoy cluster; the answer arrives in the root context's
/// `on_http_call_response` with the returned call id.
///
/// This goes through the SDK because the SDK's dispatcher must register the call id to route the
/// answer back (an unregistered id makes it panic). Envoy answers a dispatch with Ok,
/// BadArgument (e.g. unknown cluster) or InternalFailure, all of which the SDK returns as `Err`.
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> HostResult<u32> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        pairs,
        Some(body),
        Vec::new(),
        std::time::Duration::from_millis(timeout_ms),
    )
    .map_err(|status| HostError::Status(status as u32))
}

/// `:status` of an HTTP call's answer (`None` when the call failed without one).
pub fn http_call_status() -> Option<u16> {
    header(MapKind::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|value| std::str::from_utf8(&value).ok()?.parse().ok())
}

/// Up to `max` bytes of an HTTP call's answer body; `Err(TooLarge)` when it is longer.
pub fn http_call_body(size: usize, max: usize) -> HostResult<Vec<u8>> {
    if size > max {
        return Err(HostError::TooLarge);
    }
    body(BufferKind::HttpCallResponseBody, size)
}

/// Routes the `log` crate to Envoy's log, at the level Envoy runs the wasm component with.
pub struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        log(level, &record.args().to_string());
    }
    fn flush(&self) {}
}

/// Called from `_initialize`, where the host refuses every hostcall: the level is read later,
/// in `on_configure`.
pub fn install_logger() {
    // Already installed on a second call: keep the first.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Formatting a message Envoy will drop still costs time, so follow Envoy's level.
pub fn refresh_log_level() {
    log::set_max_level(match log_level() {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    });
}
