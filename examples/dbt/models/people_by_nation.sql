-- The seeded people with the nation and region they belong to.
select
    p.id,
    p.name,
    n.nation,
    n.region,
    p.joined
from {{ ref('people') }} p
join {{ ref('nations') }} n on p.nationkey = n.nationkey
