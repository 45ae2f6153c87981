-- A singular test: the seeded people whose nation is not in `nations` (none should be).
select p.id
from {{ ref('people') }} p
left join {{ ref('nations') }} n on p.nationkey = n.nationkey
where n.nationkey is null
