{{ config(tags=['email_reachable']) }}
{#- An email to send to and email consent (customer_profiles explains consent). -#}
select profile_id, email
from {{ ref('customer_profiles') }}
where email is not null and email_consent
