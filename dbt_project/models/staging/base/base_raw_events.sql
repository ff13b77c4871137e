{#-
  Every raw.events row with its normalized columns and its fate: kept (the first copy of a valid
  message), collapsed (an identical re-delivery), or quarantined with a reason. stg_events,
  quarantined_records and stg_collapsed_records all read this, so the rules live in one place.
-#}
with source as (

    select *, {{ headwater.trimmed('message_id') }} as _key
    from {{ headwater.raw_events_relation() }} as raw_events

),

repeated_keys as (

    -- Ids seen more than once. Only their rows need a fingerprint and a rank: a hash aggregate
    -- is far cheaper than sorting millions of messages in a window.
    select _key from source where _key is not null group by _key having count(*) > 1

),

repeated as (

    select
        *,
        {{ headwater.row_fingerprint([
            '_key', 'type', 'event', 'user_id', 'anonymous_id', 'previous_id',
            headwater.json_to_text('traits'), headwater.json_to_text('properties'),
            headwater.json_to_text('context'), headwater.event_timestamp_column()]) }}
            as _fingerprint
    from source
    where _key is null or _key in (select _key from repeated_keys)

),

ranked as (

    select
        *,
        row_number() over (
            partition by _key order by received_at nulls last, _fingerprint
        ) as _copy_rank,
        first_value(_fingerprint) over (
            partition by _key order by received_at nulls last, _fingerprint
            rows between unbounded preceding and unbounded following
        ) as _first_fingerprint
    from repeated

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
        lower({{ headwater.trimmed('type') }}) as _message_type,
        {{ headwater.trimmed('event') }} as _event_name,
        {{ headwater.trimmed('user_id') }} as _user_id,
        {{ headwater.trimmed('anonymous_id') }} as _anonymous_id,
        {{ headwater.trimmed('previous_id') }} as _previous_id
    from ranked

),

extracted as (

    -- every JSON path read once: the select below reads some of them many times (the phone
    -- rule reads its number about twenty times)
    select
        *,
        {{ headwater.json_text('context', 'device.id') }} as _device_id,
        {#- a trait is read from traits (identify) or else from context.traits (track, page) #}
        {%- for trait, column in [('email', '_email'), ('phone', '_phone'),
                                  ('address.country', '_country'),
                                  ('first_name', '_first_name'), ('last_name', '_last_name')] %}
        coalesce(
            {{ headwater.json_text('traits', trait) }},
            {{ headwater.json_text('context', 'traits.' ~ trait) }}
        ) as {{ column }},
        {%- endfor %}
        {{ headwater.json_text('properties', 'cart_id') }} as _cart_id,
        {{ headwater.json_text('properties', 'order_id') }} as _order_id,
        coalesce(
            {{ headwater.json_number('properties', 'revenue') }},
            {{ headwater.json_number('properties', 'total') }}
        ) as _revenue,
        {{ headwater.json_text('properties', 'currency') }} as _currency,
        {{ headwater.json_query('properties', 'products') }} as _products
    from normalized

),

phone_parts as (

    select *, {{ headwater.phone_digits('_phone') }} as _phone_digits
    from extracted

)

select
    _key as message_id,
    _message_type as message_type,
    _event_name as event_name,
    _user_id as user_id,
    _anonymous_id as anonymous_id,
    _previous_id as previous_id,
    {{ headwater.trimmed('_device_id') }} as device_id,
    {{ headwater.normalize_email('_email') }} as email,
    {{ headwater.normalize_phone('_phone', country_expr='_country',
                                 digits_expr='_phone_digits') }} as phone,
    {{ headwater.trimmed('_first_name') }} as first_name,
    {{ headwater.trimmed('_last_name') }} as last_name,
    {{ headwater.trimmed('_cart_id') }} as cart_id,
    {{ headwater.trimmed('_order_id') }} as order_id,
    _revenue as revenue,
    upper({{ headwater.trimmed('_currency') }}) as currency,
    {{ headwater.json_array('_products') }} as products,
    properties,
    context,
    {{ headwater.event_timestamp_column() }} as event_at,
    received_at,
    case
        when _key is null then 'missing_message_id'
        when _copy_rank > 1 and _fingerprint = _first_fingerprint then null
        when _copy_rank > 1 then 'duplicate_message_id'
        when _message_type is null
            or _message_type not in ('track', 'identify', 'page', 'screen', 'alias', 'group')
            then 'unknown_type'
        when {{ headwater.event_timestamp_column() }} is null then 'missing_timestamp'
        when received_at is null then 'missing_received_at'
        when _message_type = 'track' and _event_name is null then 'track_without_event'
        when _user_id is null and _anonymous_id is null then 'missing_identity'
        when _message_type = 'alias' and _previous_id is null then 'alias_without_previous_id'
    end as quarantine_reason,
    case when _key is not null and _copy_rank > 1 and _fingerprint = _first_fingerprint
        then 'exact_duplicate' end as collapse_reason,
    coalesce(_key, 'row:' || _fingerprint) as record_key,
    -- The raw values, for quarantined_records' payload (rendered there, after filtering).
    message_id as raw_message_id,
    type as raw_type,
    event as raw_event,
    user_id as raw_user_id,
    anonymous_id as raw_anonymous_id,
    previous_id as raw_previous_id,
    traits as raw_traits,
    received_at as landed_at
from phone_parts
