{{ config(tags=['ads_reachable']) }}
{#- An email or phone to match on ad platforms and ads consent (opt-in required by default). -#}
select profile_id, email, phone
from {{ ref('customer_profiles') }}
where (email is not null or phone is not null) and ads_consent
