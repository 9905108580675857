class CreateArticles < ActiveRecord::Migration[6.1]
  def change
    create_table :articles do |t|
      t.string :title, null: false
      t.text :content, null: false
      t.integer :status, null: false, default: 0
      t.references :user, null: false, foreign_key: true
      t.timestamps
    end
    add_index :articles, [:status, :created_at]
  end
end
