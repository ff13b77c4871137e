{#-
  One row per profile_id: resolved traits (int_profile_traits), computed traits from orders,
  events and carts, consent per channel (int_profile_consent), the offer the profile qualifies
  for and its propensity scores. Every "now" is as_of_timestamp().
-#}
{%- set as_of = headwater.as_of_timestamp() %}
with orders as (

    select
        profile_id,
        count(*) as order_count,
        sum(total) as lifetime_value,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from {{ ref('int_profile_orders') }}
    where counts_as_purchase
    group by profile_id

),

seen as (

    select profile_id, max(event_at) as last_event_at
    from {{ ref('int_profile_events') }}
    group by profile_id

),

open_carts as (

    select
        *,
        row_number() over (
            partition by profile_id order by cart_updated_at desc, cart_id desc
        ) as rn
    from {{ ref('int_profile_carts') }}
    where is_open

),

base as (

    select
        traits.*,
        coalesce(orders.order_count, 0) as order_count,
        cast(coalesce(orders.lifetime_value, 0) as decimal(18, 2)) as lifetime_value,
        cast(orders.lifetime_value / nullif(orders.order_count, 0) as decimal(18, 2))
            as average_order_value,
        orders.first_order_at,
        orders.last_order_at,
        case
            when seen.last_event_at is null then orders.last_order_at
            when orders.last_order_at is null then seen.last_event_at
            else greatest(seen.last_event_at, orders.last_order_at)
        end as last_seen_at,
        open_carts.cart_id as open_cart_id,
        open_carts.cart_items as open_cart_items,
        cast(open_carts.cart_value as decimal(18, 2)) as open_cart_value,
        open_carts.item_count as open_cart_item_count,
        open_carts.cart_updated_at
    from {{ ref('int_profile_traits') }} as traits
    left join orders on orders.profile_id = traits.profile_id
    left join seen on seen.profile_id = traits.profile_id
    left join open_carts on open_carts.profile_id = traits.profile_id and open_carts.rn = 1

)

select
    base.profile_id,
    base.email,
    base.email_source,
    base.phone,
    base.phone_source,
    base.first_name,
    base.last_name,
    base.crm_contact_id,
    base.loyalty_tier,
    base.loyalty_points,
    base.order_count,
    base.lifetime_value,
    base.average_order_value,
    base.first_order_at,
    base.last_order_at,
    base.last_seen_at,
    base.open_cart_id,
    base.open_cart_items,
    base.open_cart_value,
    base.open_cart_item_count,
    base.cart_updated_at,
    case
        when base.order_count = 0 then 'prospect'
        when base.first_order_at >= {{ headwater.add_days(as_of,
            -headwater.profile_setting('lifecycle_new_days')) }} then 'new'
        when base.last_order_at >= {{ headwater.add_days(as_of,
            -headwater.profile_setting('lifecycle_active_days')) }} then 'active'
        when base.last_order_at >= {{ headwater.add_days(as_of,
            -headwater.profile_setting('lifecycle_at_risk_days')) }} then 'at-risk'
        else 'lapsed'
    end as lifecycle_stage,
    consent.email_consent,
    consent.sms_consent,
    consent.ads_consent,
    consent.email_consent_recorded,
    consent.sms_consent_recorded,
    consent.ads_consent_recorded,
    offers.offer_code as qualified_offer,
    offers.description as qualified_offer_description,
    offers.discount_percent as qualified_offer_discount_percent,
    scores.purchase_propensity_30d,
    scores.churn_risk,
    {{ as_of }} as computed_as_of
from base
join {{ ref('int_profile_consent') }} as consent on consent.profile_id = base.profile_id
left join {{ ref('offers') }} as offers
    on offers.loyalty_tier = coalesce(base.loyalty_tier, 'none')
left join {{ ref('profile_scores') }} as scores on scores.profile_id = base.profile_id
