{#- One row per consent change with a usable subject; the latest per subject and channel wins
    downstream (profiles), so history is kept here. -#}
select
    identifier_type,
    identifier_value,
    channel,
    granted,
    recorded_at
from {{ ref('base_raw_consent') }}
where quarantine_reason is null and collapse_reason is null
