-- Real mapping SELECTs over the legacy PAS (docs/legacy-pas.md), PostgreSQL
-- dialect, one statement per block separated by a line holding only ';'.
-- Every one must pass the guard and run on PostgreSQL as a SELECT-only role.
SELECT papmi_rowid, papmi_no, papmi_surname FROM pa_patmas
;
SELECT papmi_rowid, REPLACE(papmi_nhsno, ' ', '') AS nhs_number FROM pa_patmas WHERE papmi_nhsno IS NOT NULL AND papmi_nhsno <> ''
;
SELECT papmi_rowid, UPPER(TRIM(papmi_surname)) AS family_name, INITCAP(TRIM(papmi_forename)) AS given_name FROM pa_patmas
;
SELECT papmi_rowid, DATE '1840-12-31' + papmi_dob AS birth_date FROM pa_patmas
;
SELECT papmi_rowid, CAST(papmi_deceaseddate AS DATE) AS death_date FROM pa_patmas WHERE papmi_deceaseddate <> ''
;
SELECT papmi_rowid, CASE papmi_sex_dr WHEN 'M' THEN '1' WHEN 'F' THEN '2' WHEN 'U' THEN '0' ELSE '9' END AS person_stated_gender_code FROM pa_patmas
;
SELECT papmi_rowid, COALESCE(NULLIF(TRIM(papmi_ethnic_dr), ''), 'Z') AS ethnic_category FROM pa_patmas
;
SELECT papmi_rowid, UPPER(REPLACE(papmi_postcode, ' ', '')) AS postcode_nospace FROM pa_patmas
;
SELECT papmi_rowid, CASE WHEN UPPER(papmi_postcode) LIKE 'ZZ99%' THEN 'pseudo' ELSE 'real' END AS postcode_kind FROM pa_patmas
;
SELECT papmi_rowid, SUBSTRING(papmi_gppractice FROM 1 FOR 6) AS gp_practice FROM pa_patmas WHERE papmi_gppractice IS NOT NULL
;
SELECT p.papmi_rowid, p.papmi_nhsno, a.paadm_admno FROM pa_patmas p JOIN pa_adm a ON a.paadm_papmi_dr = p.papmi_rowid
;
SELECT a.paadm_rowid, TO_DATE(a.paadm_admdate, 'DD/MM/YYYY') AS admission_date, DATE '1840-12-31' + a.paadm_dischdate AS discharge_date FROM pa_adm a
;
SELECT a.paadm_rowid, a.paadm_admmethod, a.paadm_admsource, a.paadm_specialty FROM pa_adm a WHERE a.paadm_dischdate IS NULL
;
SELECT a.paadm_rowid, c.ctpcp_gmcno FROM pa_adm a LEFT JOIN ct_careprov c ON c.ctpcp_code = a.paadm_consultant_dr
;
SELECT w.ws_rowid, w.ws_paadm_dr, w.ws_ward_dr, CAST(w.ws_startdate AS DATE) AS start_date, CAST(NULLIF(w.ws_enddate, '') AS DATE) AS end_date FROM pa_wardstay w
;
SELECT w.ws_rowid, cw.ward_desc, cw.ward_specialty FROM pa_wardstay w JOIN ct_ward cw ON cw.ward_code = w.ws_ward_dr
;
SELECT r.appt_rowid, CAST(r.appt_datetime AS TIMESTAMP) AS appointment_at, r.appt_status FROM rb_appointment r
;
SELECT r.appt_rowid, c.cln_desc, c.cln_specialty FROM rb_appointment r LEFT JOIN ct_clinic c ON c.cln_code = r.appt_clinic_dr
;
SELECT r.appt_rowid, CASE WHEN r.appt_status IN ('ATT', 'LATE') THEN '5' WHEN r.appt_status = 'DNA' THEN '3' WHEN r.appt_status = 'PCAN' THEN '2' WHEN r.appt_status = 'HCAN' THEN '4' ELSE '0' END AS attended FROM rb_appointment r
;
SELECT l.ct_code, l.ct_desc FROM ct_localcode l WHERE l.ct_table = 'SEX' ORDER BY l.ct_code
;
SELECT l.ct_table, COUNT(*) AS codes FROM ct_localcode l GROUP BY l.ct_table HAVING COUNT(*) > 0 ORDER BY l.ct_table
;
SELECT extractdate FROM pas_extract
;
WITH spells AS (SELECT paadm_papmi_dr, COUNT(*) AS n FROM pa_adm GROUP BY paadm_papmi_dr) SELECT p.papmi_rowid, COALESCE(s.n, 0) AS spells FROM pa_patmas p LEFT JOIN spells s ON s.paadm_papmi_dr = p.papmi_rowid
;
WITH ranked AS (SELECT paadm_rowid, paadm_papmi_dr, ROW_NUMBER() OVER (PARTITION BY paadm_papmi_dr ORDER BY paadm_rowid) AS rn FROM pa_adm) SELECT paadm_rowid, rn FROM ranked WHERE rn = 1
;
SELECT paadm_rowid, paadm_papmi_dr, LAG(paadm_dischdate) OVER (PARTITION BY paadm_papmi_dr ORDER BY paadm_rowid) AS previous_discharge FROM pa_adm
;
SELECT ws_paadm_dr, ws_rowid, LEAD(ws_startdate) OVER (PARTITION BY ws_paadm_dr ORDER BY ws_startdate) AS next_start FROM pa_wardstay
;
SELECT papmi_rowid, RANK() OVER (ORDER BY papmi_dob) AS age_rank, DENSE_RANK() OVER (ORDER BY papmi_sex_dr) AS sex_rank FROM pa_patmas
;
SELECT papmi_sex_dr, COUNT(*) AS n, MIN(papmi_dob) AS oldest, MAX(papmi_dob) AS youngest FROM pa_patmas GROUP BY papmi_sex_dr
;
SELECT REPLACE(papmi_nhsno, ' ', '') AS nhs, COUNT(*) AS n FROM pa_patmas WHERE papmi_nhsno <> '' GROUP BY REPLACE(papmi_nhsno, ' ', '') HAVING COUNT(*) > 1
;
SELECT a.papmi_rowid, b.papmi_rowid AS other FROM pa_patmas a JOIN pa_patmas b ON UPPER(TRIM(a.papmi_surname)) = UPPER(TRIM(b.papmi_surname)) AND a.papmi_dob = b.papmi_dob AND a.papmi_rowid < b.papmi_rowid
;
SELECT p.papmi_rowid FROM pa_patmas p WHERE NOT EXISTS (SELECT 1 FROM pa_adm a WHERE a.paadm_papmi_dr = p.papmi_rowid)
;
SELECT a.paadm_rowid FROM pa_adm a WHERE a.paadm_papmi_dr NOT IN (SELECT papmi_rowid FROM pa_patmas)
;
SELECT papmi_rowid FROM pa_patmas WHERE papmi_dob BETWEEN 14245 AND 94599
;
SELECT paadm_rowid FROM pa_adm UNION SELECT ws_paadm_dr FROM pa_wardstay
;
SELECT papmi_rowid AS k FROM pa_patmas UNION ALL SELECT appt_papmi_dr FROM rb_appointment
;
SELECT appt_papmi_dr FROM rb_appointment EXCEPT SELECT papmi_rowid FROM pa_patmas
;
SELECT paadm_papmi_dr FROM pa_adm INTERSECT SELECT appt_papmi_dr FROM rb_appointment
;
SELECT papmi_rowid, EXTRACT(YEAR FROM DATE '1840-12-31' + papmi_dob) AS birth_year FROM pa_patmas
;
SELECT papmi_rowid, DATE_TRUNC('month', CAST(papmi_deceaseddate AS DATE)) AS month_of_death FROM pa_patmas WHERE papmi_deceaseddate <> ''
;
SELECT appt_rowid, TO_CHAR(CAST(appt_datetime AS TIMESTAMP), 'YYYY-MM-DD') AS appt_date FROM rb_appointment
;
SELECT papmi_rowid, LENGTH(REPLACE(papmi_nhsno, ' ', '')) AS len FROM pa_patmas
;
SELECT papmi_rowid, LPAD(CAST(papmi_rowid AS TEXT), 10, '0') AS padded FROM pa_patmas
;
SELECT papmi_rowid, papmi_title || ' ' || papmi_surname AS display_name FROM pa_patmas
;
SELECT papmi_rowid, CONCAT(papmi_address1, ', ', papmi_city) AS address FROM pa_patmas
;
SELECT papmi_rowid, SPLIT_PART(papmi_postcode, ' ', 1) AS outward FROM pa_patmas
;
SELECT papmi_rowid, ROUND(papmi_dob / 365.25, 1) AS years FROM pa_patmas
;
SELECT papmi_rowid, ABS(papmi_dob - 60000) AS distance FROM pa_patmas ORDER BY distance LIMIT 10
;
SELECT papmi_rowid FROM pa_patmas ORDER BY papmi_rowid LIMIT 100 OFFSET 100
;
SELECT papmi_rowid FROM pa_patmas WHERE papmi_rowid > 1000 ORDER BY papmi_rowid FETCH FIRST 50 ROWS ONLY
;
SELECT COUNT(DISTINCT papmi_postcode) AS postcodes, SUM(CASE WHEN papmi_nhsno IS NULL THEN 1 ELSE 0 END) AS missing_nhs FROM pa_patmas
;
SELECT papmi_rowid, GREATEST(papmi_dob, 14245) AS bounded, LEAST(papmi_dob, 94599) AS capped FROM pa_patmas
;
SELECT appt_specialty, STRING_AGG(DISTINCT appt_priority, ',') AS priorities FROM rb_appointment GROUP BY appt_specialty
;
SELECT a.paadm_rowid, w.ws_rowid FROM pa_adm a JOIN pa_wardstay w ON w.ws_paadm_dr = a.paadm_rowid AND CAST(w.ws_startdate AS DATE) < TO_DATE(a.paadm_admdate, 'DD/MM/YYYY')
;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT i FROM n
;
SELECT x.papmi_rowid FROM (SELECT papmi_rowid, papmi_sex_dr FROM pa_patmas WHERE papmi_sex_dr = 'F') AS x
;
SELECT papmi_rowid, (SELECT COUNT(*) FROM rb_appointment r WHERE r.appt_papmi_dr = p.papmi_rowid) AS appts FROM pa_patmas p
;
SELECT papmi_rowid FROM pa_patmas WHERE papmi_surname ILIKE 'smi%' OR papmi_forename LIKE '%ann%'
;
SELECT papmi_rowid, COUNT(*) FILTER (WHERE papmi_sex_dr = 'M') OVER () AS males FROM pa_patmas
;
SELECT /* mapping PMI-001 v3 */ papmi_rowid FROM pa_patmas -- approved by steward
