{{ config(materialized='table') }}

{#- One row per CRM contact: its latest usable version.
    A table, like stg_events: identity resolution and the profile and measurement models all
    read it, and as a view each of them paid for its dedupe and normalization again (the CRM
    view was about 3 s of CPU inside the 1M identity build). -#}
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
