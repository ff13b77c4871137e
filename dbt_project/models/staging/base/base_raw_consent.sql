{#-
  Every raw.consent row, normalized, with its fate. Two rows for the same subject, channel and
  instant are one fact when they agree (collapsed); when they disagree the opt-out is kept and the
  grant quarantined, because sending without consent is the costlier mistake.
-#}
with source as (

    select
        *,
        lower({{ headwater.trimmed('identifier_type') }}) as _type,
        lower({{ headwater.trimmed('channel') }}) as _channel
    from {{ source('raw', 'consent') }}

),

normalized as (

    select
        *,
        case _type
            when 'email' then {{ headwater.normalize_email('identifier_value') }}
            when 'phone' then {{ headwater.normalize_phone('identifier_value') }}
            when 'user_id' then {{ headwater.trimmed('identifier_value') }}
            when 'anonymous_id' then {{ headwater.trimmed('identifier_value') }}
        end as _value
    from source

),

ranked as (

    select
        *,
        coalesce(_type, '?') || ':' || coalesce(_value, '?') || ':' || coalesce(_channel, '?') || ':'
            || coalesce(cast(recorded_at as varchar), '?') as _key,
        row_number() over (
            partition by _type, _value, _channel, recorded_at
            order by granted nulls last, identifier_value
        ) as _copy_rank,
        min(cast(granted as integer)) over (partition by _type, _value, _channel, recorded_at)
            as _min_granted,
        max(cast(granted as integer)) over (partition by _type, _value, _channel, recorded_at)
            as _max_granted
    from normalized

)

select
    _type as identifier_type,
    _value as identifier_value,
    _channel as channel,
    granted,
    recorded_at,
    case
        when _type is null or _type not in ('email', 'phone', 'user_id', 'anonymous_id')
            then 'unknown_identifier_type'
        when _value is null then 'invalid_identifier'
        when _channel is null or _channel not in ('email', 'sms', 'ads') then 'unknown_channel'
        when granted is null then 'missing_granted'
        when recorded_at is null then 'missing_timestamp'
        when _copy_rank > 1 and _min_granted = _max_granted then null
        when _copy_rank > 1 then 'conflicting_consent'
    end as quarantine_reason,
    case
        when _type in ('email', 'phone', 'user_id', 'anonymous_id') and _value is not null
            and _channel in ('email', 'sms', 'ads') and granted is not null
            and recorded_at is not null and _copy_rank > 1 and _min_granted = _max_granted
            then 'exact_duplicate'
    end as collapse_reason,
    _key as record_key,
    identifier_type as raw_identifier_type,
    identifier_value as raw_identifier_value,
    channel as raw_channel,
    recorded_at as landed_at
from ranked
