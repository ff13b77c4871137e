{#-
  Descriptive traits per profile, one row per profile_id, resolved by source priority:
    1. CRM: the profile's most recently updated CRM contact (the system of record for names
       and loyalty);
    2. events: the latest identify/track traits carrying a value (up to as_of);
    3. orders: the latest order carrying a value (email and phone only);
    4. identity_map: any other identifier of the profile (email and phone only; alphabetical).
  email and phone are only ever chosen among the profile's identifiers in identity_map, so a
  blocklisted placeholder or an identifier that resolved elsewhere can never be picked.
  loyalty_tier and loyalty_points come from the CRM only.
-#}
with profiles as (

    select distinct profile_id from {{ ref('identity_map') }}

),

crm as (

    select
        ids.profile_id,
        contacts.contact_id,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.last_name,
        contacts.loyalty_tier,
        contacts.loyalty_points,
        contacts.updated_at,
        row_number() over (
            partition by ids.profile_id order by contacts.updated_at desc, contacts.contact_id
        ) as rn
    from {{ ref('stg_crm_contacts') }} as contacts
    join {{ ref('identity_map') }} as ids
        on ids.identifier_type = 'crm_contact_id' and ids.identifier_value = contacts.contact_id

),

latest_crm as (

    select * from crm where rn = 1

),

candidates as (

    {%- for trait in ['email', 'phone', 'first_name', 'last_name'] %}
    select profile_id, '{{ trait }}' as trait, {{ trait }} as value, 1 as priority,
        'crm' as source, updated_at as observed_at
    from latest_crm where {{ trait }} is not null
    union all
    select profile_id, '{{ trait }}', {{ trait }}, 2, 'events', event_at
    from {{ ref('int_profile_events') }} where {{ trait }} is not null
    union all
    {%- endfor %}
    {%- for trait in ['email', 'phone'] %}
    select profile_id, '{{ trait }}', {{ trait }}, 3, 'orders', ordered_at
    from {{ ref('int_profile_orders') }} where {{ trait }} is not null
    union all
    select profile_id, '{{ trait }}', identifier_value, 4, 'identity_map', null
    from {{ ref('identity_map') }} where identifier_type = '{{ trait }}'
    {{ "union all" if not loop.last }}
    {%- endfor %}

),

usable as (

    -- Contact points must be identifiers of this very profile; names need no such check.
    select candidates.*
    from candidates
    left join {{ ref('identity_map') }} as ids
        on ids.identifier_type = candidates.trait
        and ids.identifier_value = candidates.value
        and ids.profile_id = candidates.profile_id
    where candidates.trait in ('first_name', 'last_name') or ids.profile_id is not null

),

ranked as (

    select
        *,
        row_number() over (
            partition by profile_id, trait
            order by priority, observed_at desc nulls last, value
        ) as rn
    from usable

),

chosen as (

    select
        profile_id,
        max(case when trait = 'email' then value end) as email,
        max(case when trait = 'email' then source end) as email_source,
        max(case when trait = 'phone' then value end) as phone,
        max(case when trait = 'phone' then source end) as phone_source,
        max(case when trait = 'first_name' then value end) as first_name,
        max(case when trait = 'last_name' then value end) as last_name
    from ranked
    where rn = 1
    group by profile_id

)

select
    profiles.profile_id,
    chosen.email,
    chosen.email_source,
    chosen.phone,
    chosen.phone_source,
    chosen.first_name,
    chosen.last_name,
    latest_crm.contact_id as crm_contact_id,
    latest_crm.loyalty_tier,
    latest_crm.loyalty_points
from profiles
left join chosen on chosen.profile_id = profiles.profile_id
left join latest_crm on latest_crm.profile_id = profiles.profile_id
