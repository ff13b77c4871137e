{{ config(tags=['sms_reachable']) }}
{#- A phone number to text and SMS consent (opt-in required by default). -#}
select profile_id, phone
from {{ ref('customer_profiles') }}
where phone is not null and sms_consent
