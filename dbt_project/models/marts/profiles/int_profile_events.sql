{#-
  Every usable event up to as_of, attributed to one profile. The strongest identifier on the
  event decides (user_id, then anonymous_id, then email, then phone), because identity_map only
  holds usable identifiers and a weaker one may have been kept out of merging.
-#}
with events as (

    select *
    from {{ ref('stg_events') }}
    where event_at <= {{ headwater.as_of_timestamp() }}

)

select
    events.message_id,
    coalesce(by_user.profile_id, by_anon.profile_id, by_email.profile_id, by_phone.profile_id)
        as profile_id,
    events.message_type,
    events.event_name,
    events.cart_id,
    events.order_id,
    events.products,
    events.properties,
    events.email,
    events.phone,
    events.first_name,
    events.last_name,
    events.event_at
from events
left join {{ ref('identity_map') }} as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = events.user_id
left join {{ ref('identity_map') }} as by_anon
    on by_anon.identifier_type = 'anonymous_id'
    and by_anon.identifier_value = events.anonymous_id
left join {{ ref('identity_map') }} as by_email
    on by_email.identifier_type = 'email' and by_email.identifier_value = events.email
left join {{ ref('identity_map') }} as by_phone
    on by_phone.identifier_type = 'phone' and by_phone.identifier_value = events.phone
where coalesce(by_user.profile_id, by_anon.profile_id, by_email.profile_id, by_phone.profile_id)
    is not null
