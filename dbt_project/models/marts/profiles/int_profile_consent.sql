{#-
  Consent per profile and channel (email, sms, ads), one row per profile_id.
    - Per identifier and channel, the latest stg_consent row wins (staging already keeps the
      opt-out when two rows share an instant).
    - Per profile and channel, an opt-out on ANY identifier of the profile wins; otherwise an
      opt-in on any identifier grants.
    - No record on any identifier: var consent_without_record decides, by default email = true
      (existing-customer email under opt-out rules such as CAN-SPAM) and sms = ads = false
      (TCPA and ad platforms' terms need an explicit opt-in). Set email to false for
      opt-in-only jurisdictions (GDPR). `<channel>_consent_recorded` tells the two apart.
  Consent on identifiers outside identity_map (placeholders, unknown ids) cannot be attributed
  to anyone and is ignored.
-#}
{%- set defaults = headwater.profile_setting('consent_without_record') %}
{%- set channels = ['email', 'sms', 'ads'] %}
with latest as (

    select
        consent.identifier_type,
        consent.identifier_value,
        consent.channel,
        consent.granted,
        consent.recorded_at,
        row_number() over (
            partition by consent.identifier_type, consent.identifier_value, consent.channel
            order by consent.recorded_at desc, case when consent.granted then 1 else 0 end
        ) as rn
    from {{ ref('stg_consent') }} as consent
    where consent.recorded_at <= {{ headwater.as_of_timestamp() }}

),

per_profile as (

    select
        ids.profile_id,
        latest.channel,
        min(case when latest.granted then 1 else 0 end) as all_granted,
        max(latest.recorded_at) as recorded_at
    from latest
    join {{ ref('identity_map') }} as ids
        on ids.identifier_type = latest.identifier_type
        and ids.identifier_value = latest.identifier_value
    where latest.rn = 1
    group by ids.profile_id, latest.channel

),

profiles as (

    select distinct profile_id from {{ ref('identity_map') }}

)

select
    profiles.profile_id
    {%- for channel in channels %},
    coalesce(
        {{ channel }}_rows.all_granted = 1,
        {{ 'true' if defaults.get(channel, false) else 'false' }}
    ) as {{ channel }}_consent,
    {{ channel }}_rows.profile_id is not null as {{ channel }}_consent_recorded,
    {{ channel }}_rows.recorded_at as {{ channel }}_consent_updated_at
    {%- endfor %}
from profiles
{%- for channel in channels %}
left join per_profile as {{ channel }}_rows
    on {{ channel }}_rows.profile_id = profiles.profile_id
    and {{ channel }}_rows.channel = '{{ channel }}'
{%- endfor %}
