{#-
  Every raw.crm_contacts row, normalized, with its fate. The CRM exports whole contacts again
  when they change, so the latest version per contact_id wins and older versions are collapsed
  (superseded), not quarantined.
-#}
with source as (

    select
        *,
        {{ headwater.trimmed('contact_id') }} as _key,
        {{ headwater.row_fingerprint([
            'contact_id', 'email', 'phone', 'first_name', 'last_name', 'loyalty_tier',
            'loyalty_points', 'updated_at']) }} as _fingerprint
    from {{ source('raw', 'crm_contacts') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by _key order by updated_at desc nulls last, _fingerprint
        ) as _copy_rank,
        first_value(_fingerprint) over (
            partition by _key order by updated_at desc nulls last, _fingerprint
            rows between unbounded preceding and unbounded following
        ) as _first_fingerprint,
        first_value(updated_at) over (
            partition by _key order by updated_at desc nulls last, _fingerprint
            rows between unbounded preceding and unbounded following
        ) as _latest_updated_at
    from source

),

normalized as (

    select
        *,
        {{ headwater.normalize_email('email') }} as _email,
        {{ headwater.normalize_phone('phone') }} as _phone,
        lower({{ headwater.trimmed('loyalty_tier') }}) as _tier
    from ranked

)

select
    _key as contact_id,
    _email as email,
    _phone as phone,
    {{ headwater.trimmed('first_name') }} as first_name,
    {{ headwater.trimmed('last_name') }} as last_name,
    case when _tier in ('bronze', 'silver', 'gold', 'platinum') then _tier end as loyalty_tier,
    loyalty_points,
    updated_at,
    case
        when _key is null then 'missing_contact_id'
        when _copy_rank > 1 and _fingerprint = _first_fingerprint then null
        -- Two different versions stamped with the same time: no way to tell which is current.
        when _copy_rank > 1 and updated_at = _latest_updated_at then 'conflicting_versions'
        when _copy_rank > 1 then null
        when _email is null and _phone is null then 'no_contact_identifier'
    end as quarantine_reason,
    case
        when _key is null or _copy_rank = 1 then null
        when _fingerprint = _first_fingerprint then 'exact_duplicate'
        when updated_at = _latest_updated_at then null
        else 'superseded_version'
    end as collapse_reason,
    coalesce(_key, 'row:' || _fingerprint) as record_key,
    contact_id as raw_contact_id,
    email as raw_email,
    phone as raw_phone,
    first_name as raw_first_name,
    last_name as raw_last_name,
    loyalty_tier as raw_loyalty_tier,
    updated_at as landed_at
from normalized
