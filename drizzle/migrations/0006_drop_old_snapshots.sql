DROP TABLE `machine_snapshots`;--> statement-breakpoint
ALTER TABLE `jobs` DROP COLUMN `snapshot`;