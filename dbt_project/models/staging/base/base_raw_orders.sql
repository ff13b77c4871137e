{#- Every raw.orders row, normalized, with its fate (see base_raw_events). -#}
with source as (

    select *, {{ headwater.trimmed('order_id') }} as _key
    from {{ source('raw', 'orders') }}

),

repeated_keys as (

    select _key from source where _key is not null group by _key having count(*) > 1

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
    from (
        select
            *,
            {{ headwater.row_fingerprint([
                '_key', 'customer_email', 'customer_phone', 'user_id', 'total', 'currency',
                'status', 'created_at', headwater.json_to_text('line_items')]) }} as _fingerprint
        from source
        where _key is null or _key in (select _key from repeated_keys)
    ) repeated

    union all

    select
        *,
        cast(null as varchar) as _fingerprint,
        1 as _copy_rank,
        cast(null as varchar) as _first_fingerprint
    from source
    where _key is not null and _key not in (select _key from repeated_keys)

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
    order_id as raw_order_id,
    customer_email as raw_customer_email,
    customer_phone as raw_customer_phone,
    user_id as raw_user_id,
    currency as raw_currency,
    status as raw_status,
    line_items as raw_line_items,
    created_at as landed_at
from normalized
