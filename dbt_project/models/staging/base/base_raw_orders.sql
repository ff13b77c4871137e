{#- Every raw.orders row, normalized, with its fate (see base_raw_events). -#}
with source as (

    select
        *,
        {{ headwater.trimmed('order_id') }} as _key,
        count(*) over (partition by {{ headwater.trimmed('order_id') }}) as _copies
    from {{ source('raw', 'orders') }}

),

fingerprinted as (

    select
        *,
        case when _copies > 1 or _key is null then {{ headwater.row_fingerprint([
            '_key', 'customer_email', 'customer_phone', 'user_id', 'total', 'currency', 'status',
            'created_at', headwater.json_to_text('line_items')]) }}
        end as _fingerprint
    from source

),

ranked as (

    select
        *,
        row_number() over (
            partition by _key order by created_at nulls last, _fingerprint
        ) as _copy_rank,
        first_value(_fingerprint) over (
            partition by _key order by created_at nulls last, _fingerprint
            rows between unbounded preceding and unbounded following
        ) as _first_fingerprint
    from fingerprinted

),

normalized as (

    select
        *,
        {{ headwater.normalize_email('customer_email') }} as _email,
        {{ headwater.normalize_phone('customer_phone') }} as _phone,
        {{ headwater.trimmed('user_id') }} as _user_id
    from ranked

)

select
    _key as order_id,
    _email as email,
    _phone as phone,
    _user_id as user_id,
    cast(total as decimal(18, 2)) as total,
    upper({{ headwater.trimmed('currency') }}) as currency,
    lower({{ headwater.trimmed('status') }}) as status,
    created_at as ordered_at,
    {{ headwater.json_array('line_items') }} as line_items,
    case
        when _key is null then 'missing_order_id'
        when _copy_rank > 1 and _fingerprint = _first_fingerprint then null
        when _copy_rank > 1 then 'duplicate_order_id'
        when created_at is null then 'missing_timestamp'
        when total is null then 'missing_total'
        when total < 0 then 'negative_total'
        when _email is null and _phone is null and _user_id is null then 'no_identifier'
    end as quarantine_reason,
    case when _key is not null and _copy_rank > 1 and _fingerprint = _first_fingerprint
        then 'exact_duplicate' end as collapse_reason,
    coalesce(_key, 'row:' || _fingerprint) as record_key,
    {{ headwater.json_object_text([
        ('order_id', 'order_id'), ('customer_email', 'customer_email'),
        ('customer_phone', 'customer_phone'), ('user_id', 'user_id'), ('total', 'total'),
        ('currency', 'currency'), ('status', 'status'), ('created_at', 'created_at'),
        ('line_items', 'line_items')]) }} as raw_payload,
    created_at as landed_at
from normalized
