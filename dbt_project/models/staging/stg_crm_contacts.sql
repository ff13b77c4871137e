{#- One row per CRM contact: its latest usable version. -#}
select
    contact_id,
    email,
    phone,
    first_name,
    last_name,
    loyalty_tier,
    loyalty_points,
    updated_at
from {{ ref('base_raw_crm_contacts') }}
where quarantine_reason is null and collapse_reason is null
